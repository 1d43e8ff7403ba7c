//! Record headers as bytes, both ways.
//!
//! The Kafka protocol says a header name is a UTF-8 string, but librdkafka neither checks it on
//! produce nor on fetch, and rdkafka's safe accessors assume it (they panic on a name that is not
//! UTF-8). A producer written with a byte-level client can therefore put a record on a topic that
//! would stop a naive consumer for good. Weft reads every header name and value as bytes here, so
//! such a record is refused with a reason and dead-lettered byte for byte instead.
//!
//! This is the one module that talks to librdkafka directly: `rd_kafka_header_get_all` to read a
//! name without a UTF-8 check, `rd_kafka_header_add` with an explicit name length to write one.
//!
//! A name may even hold a NUL byte, which `rd_kafka_header_get_all` hides (it hands out the name as
//! a C string). The name's true length is read from librdkafka's header object, so such a name is
//! read whole: the record is then refused as invalid (see `kafka_in/accept.rs`) and its dead letter
//! carries the name byte for byte.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_void};

use rdkafka::bindings as rd;
use rdkafka::message::{BorrowedHeaders, Headers, OwnedHeaders};

/// One header: name and value bytes (`None`: a null value).
pub type HeaderBytes<'a> = (&'a [u8], Option<&'a [u8]>);

/// Every header of a fetched record, in order, names and values as bytes.
pub fn read(headers: &BorrowedHeaders) -> Vec<HeaderBytes<'_>> {
    // `BorrowedHeaders` is a zero-sized stand-in whose address is librdkafka's headers object.
    let native = std::ptr::from_ref(headers).cast::<rd::rd_kafka_headers_t>();
    (0..headers.count())
        .filter_map(|index| {
            let mut name: *const c_char = std::ptr::null();
            let mut value: *const c_void = std::ptr::null();
            let mut size = 0usize;
            // SAFETY: `native` is the live headers object `headers` borrows; the pointers written
            // back point into it and stay valid as long as that borrow.
            let error =
                unsafe { rd::rd_kafka_header_get_all(native, index, &mut name, &mut value, &mut size) };
            if error != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return None;
            }
            // SAFETY: librdkafka keeps every name NUL-terminated, in its header object after the
            // name's length (see `name_size`); a non-null value has `size` bytes.
            let visible = unsafe { CStr::from_ptr(name) }.to_bytes();
            let name = match unsafe { name_size(name) } {
                // A NUL inside the name: the whole name, as the record carries it.
                size if size > visible.len() => unsafe {
                    std::slice::from_raw_parts(name.cast::<u8>(), size)
                },
                _ => visible,
            };
            let value =
                (!value.is_null()).then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
            Some((name, value))
        })
        .collect()
}

/// The length of a header name handed out by `rd_kafka_header_get_all`, NUL bytes included.
///
/// librdkafka (`rdkafka_header.h`, the version rdkafka-sys pins) allocates each header as
/// `{ size_t ser_size; size_t value_size; size_t name_size; char *value; char name[]; }`, so the
/// name's length is the `size_t` two words before the name. Every header, fetched or built, is
/// made by `rd_kafka_header_add`, which fills it in. The tests round-trip names with NUL bytes,
/// so a librdkafka that lays it out otherwise fails them.
///
/// # Safety
/// `name` must be a name pointer `rd_kafka_header_get_all` returned, of a live headers object.
unsafe fn name_size(name: *const c_char) -> usize {
    const NAME_OFFSET: usize = 3 * size_of::<usize>() + size_of::<*const c_char>();
    const NAME_SIZE_OFFSET: usize = 2 * size_of::<usize>();
    // SAFETY: per the layout above, `name` is NAME_OFFSET bytes into the header, which starts
    // `usize`-aligned, so the length field is readable and aligned.
    unsafe { name.cast::<u8>().sub(NAME_OFFSET - NAME_SIZE_OFFSET).cast::<usize>().read() }
}

/// A valid address for an empty name or value: librdkafka copies zero bytes from it, and C's
/// `memcpy` wants a valid pointer even then (an empty slice's is dangling).
static EMPTY: [u8; 1] = [0];

/// Headers to produce, names taken byte for byte (a name need not be UTF-8).
pub fn build<'a>(headers: impl IntoIterator<Item = HeaderBytes<'a>>) -> OwnedHeaders {
    let headers = headers.into_iter();
    let owned = OwnedHeaders::new_with_capacity(headers.size_hint().0);
    let native = std::ptr::from_ref(owned.as_borrowed()).cast::<rd::rd_kafka_headers_t>().cast_mut();
    for (name, value) in headers {
        let (value_ptr, value_len) = match value {
            Some([]) => (EMPTY.as_ptr().cast::<c_void>(), 0),
            Some(v) => (v.as_ptr().cast::<c_void>(), v.len() as isize),
            None => (std::ptr::null(), 0),
        };
        let name_ptr = if name.is_empty() { EMPTY.as_ptr() } else { name.as_ptr() };
        // SAFETY: `native` is the headers object `owned` owns and nothing else references yet;
        // librdkafka copies the name and value, whose lengths are given explicitly. Adding to a
        // headers object that is not read-only cannot fail.
        unsafe {
            rd::rd_kafka_header_add(
                native,
                name_ptr.cast::<c_char>(),
                name.len() as isize,
                value_ptr,
                value_len,
            );
        }
    }
    owned
}

/// A name for logs and error messages: the text if it is UTF-8, else its bytes in hex.
pub fn printable(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("0x{}", hex::encode(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_utf8_survive_a_round_trip() {
        let written: Vec<HeaderBytes<'_>> = vec![
            (b"ce_id", Some(b"e-1")),
            (b"\xff\xfe", Some(b"\x00\x01")),
            (b"nullable", None),
            (b"empty", Some(b"")),
        ];
        let owned = build(written.iter().copied());
        assert_eq!(owned.count(), 4);
        let read_back = read(owned.as_borrowed());
        assert_eq!(read_back[0], (b"ce_id".as_slice(), Some(b"e-1".as_slice())));
        assert_eq!(read_back[1], (b"\xff\xfe".as_slice(), Some(b"\x00\x01".as_slice())));
        assert_eq!(read_back[2], (b"nullable".as_slice(), None));
        assert_eq!(read_back[3].0, b"empty");
        assert!(read_back[3].1.is_none_or(<[u8]>::is_empty));
    }

    #[test]
    fn names_with_a_nul_byte_are_read_whole() {
        let written: Vec<HeaderBytes<'_>> =
            vec![(b"ce_id\0x", Some(b"e-1")), (b"\0", None), (b"tail\0", Some(b"")), (b"", Some(b"v"))];
        let owned = build(written.iter().copied());
        let read_back = read(owned.as_borrowed());
        assert_eq!(read_back[0], (b"ce_id\0x".as_slice(), Some(b"e-1".as_slice())));
        assert_eq!(read_back[1], (b"\0".as_slice(), None));
        assert_eq!(read_back[2].0, b"tail\0");
        assert_eq!(read_back[3], (b"".as_slice(), Some(b"v".as_slice())));
    }

    #[test]
    fn printable_names() {
        assert_eq!(printable(b"x-tenant"), "\"x-tenant\"");
        assert_eq!(printable(b"\xff\xfe"), "0xfffe");
    }
}
