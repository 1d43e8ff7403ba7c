//! Test plugin: a well-formed component that implements a world other than `weft:handler/handler`.
//! Weft must refuse to load it, with a reason, and keep serving its other plugins.

wit_bindgen::generate!({ path: "wit", world: "greeter" });

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}

export!(Greeter);
