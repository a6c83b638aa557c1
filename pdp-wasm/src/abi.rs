//! The plain C ABI: functions over linear-memory byte buffers, usable from
//! any WebAssembly runtime without wasm-bindgen glue (see README.md, "C
//! ABI", for the contract).
//!
//! Ownership: a buffer the host fills (after `alloc`) stays the host's and
//! is freed by it with `dealloc`; every answer is a fresh buffer whose
//! `(ptr, len)` comes packed in a `u64` (`ptr << 32 | len`) and is the
//! host's to `dealloc`. Loaded decision points live in a table here and
//! are named by non-zero `u32` handles.
//!
//! This is the one module of the workspace with `unsafe` code: exporting
//! unmangled symbols, and three one-line blocks that turn host-given
//! `(ptr, len)` pairs into allocations and slices.
#![allow(
    unsafe_code,
    reason = "a C ABI over linear memory: unmangled exports and raw (ptr, len) buffers"
)]

use crate::engine::{Failure, Pdp, SearchKind, loaded_json};
use std::alloc::Layout;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Loaded decision points by handle.
#[derive(Default)]
struct Table {
    next: u32,
    pdps: BTreeMap<u32, Pdp>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    next: 0,
    pdps: BTreeMap::new(),
});

fn table() -> MutexGuard<'static, Table> {
    // wasm32 without threads never contends; a poisoned lock cannot happen
    // with panic=abort, and its data would still be consistent.
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Allocate `len` bytes for the host to write a request into. Returns 0
/// when memory is exhausted (then the host must not write).
#[unsafe(no_mangle)]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    if len == 0 {
        return std::ptr::NonNull::<u8>::dangling().as_ptr();
    }
    match Layout::array::<u8>(len) {
        // SAFETY: the layout has a non-zero size (checked above).
        Ok(layout) => unsafe { std::alloc::alloc(layout) },
        Err(_) => std::ptr::null_mut(),
    }
}

/// Free a buffer from `alloc`, or an answer, with the length it was given
/// or returned with.
///
/// # Safety
///
/// `ptr` must come from `alloc(len)` or be an answer of `len` bytes, and
/// be freed only once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dealloc(ptr: *mut u8, len: usize) {
    if ptr.is_null() || len == 0 {
        return;
    }
    if let Ok(layout) = Layout::array::<u8>(len) {
        // SAFETY: the contract: `ptr` came from `alloc(len)` or is an answer
        // of `len` bytes (a `Box<[u8]>`, whose layout is `array::<u8>(len)`),
        // and is freed once.
        unsafe { std::alloc::dealloc(ptr, layout) }
    }
}

/// The host's bytes at `(ptr, len)`, or `None` for a null pointer.
fn input<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the contract: `(ptr, len)` is a buffer from `alloc(len)` that
    // the host filled and does not touch until the call returns.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// An answer as a host-owned buffer, packed `ptr << 32 | len`.
fn answer(json: String) -> u64 {
    let bytes: Box<[u8]> = json.into_bytes().into_boxed_slice();
    let len = bytes.len() as u64;
    let ptr = Box::into_raw(bytes).cast::<u8>() as usize as u64;
    (ptr << 32) | len
}

fn bad_buffer(what: &str) -> u64 {
    answer(Failure::new("invalid_buffer", what).to_json())
}

fn unknown(handle: u32) -> u64 {
    answer(
        Failure::new(
            "unknown_handle",
            format!("no decision point has handle {handle}"),
        )
        .to_json(),
    )
}

/// Run `f` on the decision point `handle` over the request at `(ptr, len)`.
fn with_request(
    handle: u32,
    ptr: *const u8,
    len: usize,
    f: impl FnOnce(&Pdp, &[u8]) -> String,
) -> u64 {
    let t = table();
    let Some(pdp) = t.pdps.get(&handle) else {
        return unknown(handle);
    };
    // Refuse an oversized request before touching its bytes.
    if let Err(e) = pdp.check_size(len as u64) {
        return answer(e.to_json());
    }
    match input(ptr, len) {
        Some(bytes) => answer(f(pdp, bytes)),
        None => bad_buffer("request pointer is null"),
    }
}

/// Load a bundle with options JSON (both may be empty: options default to
/// trusting nothing, which refuses every bundle). Answers
/// `{"type":"success","handle":N,"realm":..,"revision":..,"signed_by":..}`
/// or a tagged failure.
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_load(
    ptr: *const u8,
    len: usize,
    opts_ptr: *const u8,
    opts_len: usize,
) -> u64 {
    let (Some(bundle), Some(options)) = (input(ptr, len), input(opts_ptr, opts_len)) else {
        return bad_buffer("bundle or options pointer is null");
    };
    let result = Pdp::load(bundle, options).and_then(|pdp| {
        let mut t = table();
        let handle = t
            .next
            .checked_add(1)
            .ok_or_else(|| Failure::new("too_many_handles", "every handle has been used"))?;
        t.next = handle;
        let loaded = pdp.loaded(Some(handle));
        t.pdps.insert(handle, pdp);
        Ok(loaded)
    });
    answer(loaded_json(result))
}

/// Apply a delta (or a newer snapshot) to `handle`. On failure the held
/// snapshot keeps answering.
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_apply_delta(handle: u32, ptr: *const u8, len: usize) -> u64 {
    let Some(bytes) = input(ptr, len) else {
        return bad_buffer("bundle pointer is null");
    };
    let mut t = table();
    let Some(pdp) = t.pdps.get_mut(&handle) else {
        return unknown(handle);
    };
    answer(loaded_json(
        pdp.update(bytes).map(|()| pdp.loaded(Some(handle))),
    ))
}

/// Decide one request (`Request` JSON).
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_is_authorized(handle: u32, ptr: *const u8, len: usize) -> u64 {
    with_request(handle, ptr, len, Pdp::is_authorized)
}

/// Decide one token request (`TokenRequest` JSON, token inside) at unix
/// time `now` (seconds, host-supplied: the module has no clock).
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_is_authorized_with_token(
    handle: u32,
    ptr: *const u8,
    len: usize,
    now: i64,
) -> u64 {
    with_request(handle, ptr, len, |p, b| p.is_authorized_with_token(b, now))
}

/// Decide a batch (`BatchRequest` JSON).
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_batch_is_authorized(handle: u32, ptr: *const u8, len: usize) -> u64 {
    with_request(handle, ptr, len, Pdp::batch_is_authorized)
}

/// One page of a resource search (`ResourceSearch` JSON) -> `Tagged<Found>`.
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_search_resources(handle: u32, ptr: *const u8, len: usize) -> u64 {
    with_request(handle, ptr, len, |p, b| p.search(SearchKind::Resource, b))
}

/// One page of a subject search (`SubjectSearch` JSON) -> `Tagged<Found>`.
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_search_subjects(handle: u32, ptr: *const u8, len: usize) -> u64 {
    with_request(handle, ptr, len, |p, b| p.search(SearchKind::Subject, b))
}

/// One page of an action search (`ActionSearch` JSON) -> `Tagged<Found>`.
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_search_actions(handle: u32, ptr: *const u8, len: usize) -> u64 {
    with_request(handle, ptr, len, |p, b| p.search(SearchKind::Action, b))
}

/// Look a user up by id (UTF-8 bytes).
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_user(handle: u32, ptr: *const u8, len: usize) -> u64 {
    with_request(handle, ptr, len, |p, b| match std::str::from_utf8(b) {
        Ok(id) => p.user(id),
        Err(e) => Failure::new("invalid_request", format!("user id: {e}")).to_json(),
    })
}

/// The revision `handle` holds, or -1 for an unknown handle.
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_revision(handle: u32) -> i64 {
    table()
        .pdps
        .get(&handle)
        .map_or(-1, |p| i64::try_from(p.revision()).unwrap_or(i64::MAX))
}

/// Drop the decision point `handle`. Returns 1 if it existed, else 0.
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_free(handle: u32) -> i32 {
    i32::from(table().pdps.remove(&handle).is_some())
}
