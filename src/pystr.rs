//! Python strings from the bytes of a packet: latin-1 decoding in one C call, and a cache of
//! the values that repeat from request to request (`GET`, `HTTP/1.1`, the server name, the
//! usual `Accept` and `User-Agent` headers), so a repeated value costs a compare, not an
//! allocation.

use std::sync::Mutex;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// Decodes latin-1 bytes to a Python string (V1): every byte is the code point of the same value.
#[allow(unsafe_code)]
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = ffi::Py_ssize_t::try_from(bytes.len())
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("value too long"))?;
    // SAFETY: the pointer and length describe a live byte slice that the call only reads (it
    // copies the bytes); we hold the GIL (`py`); the result is a new reference, or NULL with an
    // exception set, which `from_owned_ptr_or_err` turns into the error; a
    // successful result is always a `str`.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), len, std::ptr::null()),
        )
        .map(|obj| obj.cast_into_unchecked::<PyString>())
    }
}

/// Values longer than this are not cached.
const MAX_CACHED: usize = 160;

struct Slot {
    len: usize,
    bytes: [u8; MAX_CACHED],
    value: Option<Py<PyString>>,
}

/// The last value seen for each cacheable key (one slot per key index).
pub struct ValueCache {
    slots: Vec<Slot>,
}

static CACHE: Mutex<ValueCache> = Mutex::new(ValueCache { slots: Vec::new() });

impl ValueCache {
    /// The latin-1 string of `bytes` for the key of slot `idx`: the cached one when the key's
    /// last value was the same bytes.
    pub fn get<'py>(
        &mut self,
        py: Python<'py>,
        idx: usize,
        bytes: &[u8],
    ) -> PyResult<Bound<'py, PyString>> {
        if bytes.len() > MAX_CACHED {
            return latin1(py, bytes);
        }
        if self.slots.len() <= idx {
            self.slots.resize_with(idx + 1, || Slot {
                len: 0,
                bytes: [0; MAX_CACHED],
                value: None,
            });
        }
        let Some(slot) = self.slots.get_mut(idx) else {
            return latin1(py, bytes);
        };
        if let Some(value) = &slot.value {
            if slot.bytes.get(..slot.len) == Some(bytes) {
                return Ok(value.bind(py).clone());
            }
        }
        let value = latin1(py, bytes)?;
        if let Some(dst) = slot.bytes.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
            slot.len = bytes.len();
            slot.value = Some(value.clone().unbind());
        }
        Ok(value)
    }
}

/// Runs `f` with the value cache, or with none when another thread holds it (the caller then
/// decodes every value itself).
pub fn with_cache<R>(f: impl FnOnce(Option<&mut ValueCache>) -> R) -> R {
    match CACHE.try_lock() {
        Ok(mut cache) => f(Some(&mut cache)),
        Err(_) => f(None),
    }
}
