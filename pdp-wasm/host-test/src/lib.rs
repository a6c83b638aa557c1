//! A wasmtime host for the pdp-wasm module's C ABI: what any Rust program
//! embedding the module would write, and what the parity tests drive.
//!
//! It links every import the module has (the JS face's, which the C ABI
//! never calls) to a trap, so a test run proves the C ABI needs no glue.

use anyhow::{Context as _, Result, anyhow, bail};
use wasmtime::{Engine, Instance, Linker, Memory, Module, Store, TypedFunc};

/// One instance of the module and its C ABI exports.
pub struct WasmPdp {
    store: Store<()>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    dealloc: TypedFunc<(u32, u32), ()>,
    load: TypedFunc<(u32, u32, u32, u32), u64>,
    apply_delta: TypedFunc<(u32, u32, u32), u64>,
    is_authorized: TypedFunc<(u32, u32, u32), u64>,
    with_token: TypedFunc<(u32, u32, u32, i64), u64>,
    batch: TypedFunc<(u32, u32, u32), u64>,
    user: TypedFunc<(u32, u32, u32), u64>,
    search_resources: TypedFunc<(u32, u32, u32), u64>,
    search_subjects: TypedFunc<(u32, u32, u32), u64>,
    search_actions: TypedFunc<(u32, u32, u32), u64>,
    revision: TypedFunc<u32, i64>,
    free: TypedFunc<u32, i32>,
}

/// Compile the module at `path`.
pub fn compile(path: &std::path::Path) -> Result<(Engine, Module)> {
    let engine = Engine::default();
    let module = Module::from_file(&engine, path)
        .with_context(|| format!("compiling {}", path.display()))?;
    Ok((engine, module))
}

impl WasmPdp {
    /// Instantiate `module`, every import a trap.
    pub fn new(engine: &Engine, module: &Module) -> Result<WasmPdp> {
        let mut store = Store::new(engine, ());
        let mut linker = Linker::new(engine);
        linker.define_unknown_imports_as_traps(module)?;
        let instance: Instance = linker.instantiate(&mut store, module)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| anyhow!("no exported memory"))?;
        macro_rules! f {
            ($name:literal) => {
                instance
                    .get_typed_func(&mut store, $name)
                    .with_context(|| $name)?
            };
        }
        Ok(WasmPdp {
            alloc: f!("alloc"),
            dealloc: f!("dealloc"),
            load: f!("gatehouse_load"),
            apply_delta: f!("gatehouse_apply_delta"),
            is_authorized: f!("gatehouse_is_authorized"),
            with_token: f!("gatehouse_is_authorized_with_token"),
            batch: f!("gatehouse_batch_is_authorized"),
            user: f!("gatehouse_user"),
            search_resources: f!("gatehouse_search_resources"),
            search_subjects: f!("gatehouse_search_subjects"),
            search_actions: f!("gatehouse_search_actions"),
            revision: f!("gatehouse_revision"),
            free: f!("gatehouse_free"),
            memory,
            store,
        })
    }

    /// Copy `bytes` into a fresh module buffer.
    fn put(&mut self, bytes: &[u8]) -> Result<(u32, u32)> {
        let len = u32::try_from(bytes.len())?;
        let ptr = self.alloc.call(&mut self.store, len)?;
        if ptr == 0 {
            bail!("alloc({len}) failed");
        }
        self.memory.write(&mut self.store, ptr as usize, bytes)?;
        Ok((ptr, len))
    }

    fn free_buf(&mut self, (ptr, len): (u32, u32)) -> Result<()> {
        self.dealloc.call(&mut self.store, (ptr, len))
    }

    /// Read and free a packed answer.
    fn take(&mut self, packed: u64) -> Result<String> {
        let (ptr, len) = ((packed >> 32) as u32, packed as u32);
        let mut buf = vec![0; len as usize];
        self.memory.read(&self.store, ptr as usize, &mut buf)?;
        self.free_buf((ptr, len))?;
        Ok(String::from_utf8(buf)?)
    }

    /// Call `f` with `bytes` in module memory, then free them.
    fn with_buf(
        &mut self,
        bytes: &[u8],
        f: impl FnOnce(&mut Self, u32, u32) -> Result<u64>,
    ) -> Result<String> {
        let (ptr, len) = self.put(bytes)?;
        let packed = f(self, ptr, len)?;
        self.free_buf((ptr, len))?;
        self.take(packed)
    }

    /// `gatehouse_load`: the answer JSON.
    pub fn load(&mut self, bundle: &[u8], options: &[u8]) -> Result<String> {
        let b = self.put(bundle)?;
        let o = self.put(options)?;
        let packed = self.load.call(&mut self.store, (b.0, b.1, o.0, o.1))?;
        self.free_buf(b)?;
        self.free_buf(o)?;
        self.take(packed)
    }

    /// `gatehouse_apply_delta`.
    pub fn apply_delta(&mut self, handle: u32, bundle: &[u8]) -> Result<String> {
        self.with_buf(bundle, |s, p, l| {
            s.apply_delta.call(&mut s.store, (handle, p, l))
        })
    }

    /// `gatehouse_is_authorized`.
    pub fn is_authorized(&mut self, handle: u32, request: &[u8]) -> Result<String> {
        self.with_buf(request, |s, p, l| {
            s.is_authorized.call(&mut s.store, (handle, p, l))
        })
    }

    /// `gatehouse_is_authorized_with_token`.
    pub fn is_authorized_with_token(
        &mut self,
        handle: u32,
        request: &[u8],
        now: i64,
    ) -> Result<String> {
        self.with_buf(request, |s, p, l| {
            s.with_token.call(&mut s.store, (handle, p, l, now))
        })
    }

    /// `gatehouse_batch_is_authorized`.
    pub fn batch_is_authorized(&mut self, handle: u32, batch: &[u8]) -> Result<String> {
        self.with_buf(batch, |s, p, l| s.batch.call(&mut s.store, (handle, p, l)))
    }

    /// `gatehouse_user`.
    pub fn user(&mut self, handle: u32, id: &str) -> Result<String> {
        self.with_buf(id.as_bytes(), |s, p, l| {
            s.user.call(&mut s.store, (handle, p, l))
        })
    }

    /// `gatehouse_search_resources`, `gatehouse_search_subjects` or
    /// `gatehouse_search_actions`, by `kind` (`resource`, `subject`,
    /// `action`: the names `pdp search` takes).
    pub fn search(&mut self, handle: u32, kind: &str, query: &[u8]) -> Result<String> {
        let f = match kind {
            "resource" => self.search_resources.clone(),
            "subject" => self.search_subjects.clone(),
            "action" => self.search_actions.clone(),
            other => bail!("no search {other:?}"),
        };
        self.with_buf(query, |s, p, l| f.call(&mut s.store, (handle, p, l)))
    }

    /// `gatehouse_revision`.
    pub fn revision(&mut self, handle: u32) -> Result<i64> {
        self.revision.call(&mut self.store, handle)
    }

    /// `gatehouse_free`.
    pub fn free(&mut self, handle: u32) -> Result<i32> {
        self.free.call(&mut self.store, handle)
    }

    /// `alloc` itself: the pointer, 0 when the module cannot allocate.
    pub fn alloc_raw(&mut self, len: u32) -> Result<u32> {
        self.alloc.call(&mut self.store, len)
    }

    /// Linear memory size in bytes (it grows, never shrinks).
    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }
}
