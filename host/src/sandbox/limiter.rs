//! The store's resource limiter: one memory budget for a whole plugin instance.

/// Bytes one table element costs the host (a pointer), counted against the memory cap.
pub const TABLE_ELEMENT_BYTES: usize = 8;
/// Core instances one plugin instance may create (a component instantiates several).
pub const MAX_CORE_INSTANCES: usize = 256;
/// Linear memories one plugin instance may hold, across its core instances.
pub const MAX_MEMORIES: usize = 32;
/// Tables one plugin instance may hold, across its core instances.
pub const MAX_TABLES: usize = 256;

/// A store's growth went past the plugin's memory cap.
#[derive(Debug, thiserror::Error)]
#[error("the instance would hold {wanted} bytes of memories and tables, past its {cap}-byte limit")]
pub struct MemoryLimitExceeded {
    /// Bytes the growth asked for, in total.
    pub wanted: usize,
    /// The cap.
    pub cap: usize,
}

/// The store's resource limiter. The cap holds for the instance as a whole: every linear memory
/// and every table (at [`TABLE_ELEMENT_BYTES`] an element) of every core instance the component
/// creates counts against one budget, and the numbers of instances, memories and tables are
/// bounded. Growth past the cap traps (reason `memory_limit`) rather than failing softly, so a
/// plugin cannot keep running in a state it did not expect.
pub struct Limiter {
    cap: usize,
    /// Bytes of linear memory the instance holds, all memories together.
    pub memory_bytes: usize,
    /// Bytes the instance's tables cost, all tables together.
    pub table_bytes: usize,
}

impl Limiter {
    /// A limiter allowing `cap` bytes of memories and tables in all.
    pub fn new(cap: usize) -> Self {
        Self { cap, memory_bytes: 0, table_bytes: 0 }
    }

    /// Memories and tables together, in bytes.
    pub fn total_bytes(&self) -> usize {
        self.memory_bytes + self.table_bytes
    }

    fn grow(
        &mut self,
        what: fn(&mut Self) -> &mut usize,
        current: usize,
        desired: usize,
    ) -> wasmtime::Result<bool> {
        let wanted = self.total_bytes().saturating_sub(current).saturating_add(desired);
        if wanted > self.cap {
            return Err(MemoryLimitExceeded { wanted, cap: self.cap }.into());
        }
        let slot = what(self);
        *slot = slot.saturating_sub(current).saturating_add(desired);
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.grow(|l| &mut l.memory_bytes, current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let bytes = |elements: usize| elements.saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow(|l| &mut l.table_bytes, bytes(current), bytes(desired))
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Engine, Instance, Module, Store};

    use super::*;

    /// A core module with two memories and a table, and exports that grow them.
    const GROWER: &str = r#"(module
        (memory 1) (memory $second 1)
        (table 1 funcref)
        (func (export "grow0") (param i32) (result i32) (memory.grow 0 (local.get 0)))
        (func (export "grow1") (param i32) (result i32) (memory.grow $second (local.get 0)))
        (func (export "grow_table") (param i32) (result i32) (table.grow 0 (ref.null func) (local.get 0))))"#;

    fn store(cap: usize) -> (Store<Limiter>, Instance) {
        let engine = Engine::default();
        let module = Module::new(&engine, wat::parse_str(GROWER).unwrap()).unwrap();
        let mut store = Store::new(&engine, Limiter::new(cap));
        store.limiter(|limiter| limiter);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        (store, instance)
    }

    fn grow(store: &mut Store<Limiter>, instance: &Instance, export: &str, by: i32) -> wasmtime::Result<i32> {
        instance.get_typed_func::<i32, i32>(&mut *store, export).unwrap().call(&mut *store, by)
    }

    const PAGE: usize = 64 << 10;

    #[test]
    fn the_cap_holds_for_all_memories_together() {
        let (mut store, instance) = store(64 << 20);
        assert_eq!(store.data().memory_bytes, 2 * PAGE);
        // 40 MiB in the first memory fits; 40 more in the second does not.
        grow(&mut store, &instance, "grow0", 640).unwrap();
        let error = grow(&mut store, &instance, "grow1", 640).unwrap_err();
        assert!(error.downcast_ref::<MemoryLimitExceeded>().is_some(), "{error:?}");
        assert_eq!(store.data().memory_bytes, 641 * PAGE + PAGE, "the gauge counts every memory");
    }

    #[test]
    fn a_huge_table_grow_traps_instead_of_allocating() {
        let (mut store, instance) = store(64 << 20);
        let error = grow(&mut store, &instance, "grow_table", 1 << 28).unwrap_err();
        assert!(error.downcast_ref::<MemoryLimitExceeded>().is_some(), "{error:?}");
        // A modest table still grows, and counts.
        assert_eq!(grow(&mut store, &instance, "grow_table", 1_000).unwrap(), 1);
        assert_eq!(store.data().table_bytes, 1_001 * TABLE_ELEMENT_BYTES);
    }

    #[test]
    fn counts_of_memories_and_instances_are_bounded() {
        let engine = Engine::default();
        let memories: String = (0..=MAX_MEMORIES).map(|_| "(memory 0)").collect();
        let module = Module::new(&engine, wat::parse_str(format!("(module {memories})")).unwrap()).unwrap();
        let mut store = Store::new(&engine, Limiter::new(64 << 20));
        store.limiter(|limiter| limiter);
        let error = Instance::new(&mut store, &module, &[]).unwrap_err();
        assert!(format!("{error:#}").contains("memor"), "{error:#}");
    }
}
