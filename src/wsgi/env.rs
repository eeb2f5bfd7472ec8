//! Building the WSGI environ dict from a validated head (E1–E7, V1, V3).
//!
//! Keys of the vars nginx sends are interned once; values are decoded latin-1 (PEP 3333) with an
//! ASCII fast path. The constant part of the environ is a dict prepared once per worker and
//! copied per request.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::core::framing::slice;
use crate::core::kind::{Control, Kind};
use crate::core::vars::{strip_script_name, Head, Var, NONE};
use crate::exceptions::configuration_problem;

use crate::core::keys::{
    control_key, key_index, GUNICORN_SOCKET, HTTP_HOST, KEY_NAMES, RAW_URI, REQUEST_SCHEME,
    URL_SCHEME, WSGI_INPUT,
};

/// Keys whose values change with nearly every request: not worth a cache slot (and a cookie or
/// credential is not kept past its request).
const UNCACHED: &[usize] = &[0, 4, 5, 11, 21, 25, 28, 31, 32, 40, RAW_URI];

/// Keys every environ has, whatever the request: [`build`] always sets them.
const ALWAYS: &[usize] = &[
    control_key(Control::RequestMethod),
    control_key(Control::QueryString),
    control_key(Control::PathInfo),
    control_key(Control::ScriptName),
    control_key(Control::ServerProtocol),
    control_key(Control::RemoteAddr),
    control_key(Control::ServerName),
    control_key(Control::ServerPort),
    RAW_URI,
    URL_SCHEME,
    WSGI_INPUT,
    GUNICORN_SOCKET,
];

/// Entries at which CPython gives a dict the 64-slot table that holds a browser's environ
/// (about 35 keys) without growing.
const ROOMY: usize = 22;

/// The dict each environ starts as a copy of: the constant environ, a `None` slot for each
/// key of [`ALWAYS`] (a request fills it in place), and a table already large enough for the
/// whole environ, since a copy keeps its source's table. The table is grown by padding keys,
/// removed again.
pub fn prepare_base<'py>(
    py: Python<'py>,
    constant: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    let base = constant.copy()?;
    for &i in ALWAYS {
        let key = known_key(py, i);
        if !base.contains(&key)? {
            base.set_item(key, py.None())?;
        }
    }
    let pads: Vec<Bound<'py, PyString>> = (base.len()..ROOMY)
        .map(|i| PyString::new(py, &format!("\0pad{i}")))
        .collect();
    for pad in &pads {
        base.set_item(pad, py.None())?;
    }
    for pad in &pads {
        base.del_item(pad)?;
    }
    Ok(base)
}

fn is_cached(idx: usize) -> bool {
    !UNCACHED.contains(&idx)
}

static KEYS: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();

fn keys(py: Python<'_>) -> &[Py<PyString>] {
    KEYS.get_or_init(py, || {
        KEY_NAMES
            .iter()
            .map(|k| PyString::intern(py, std::str::from_utf8(k).unwrap_or_default()).unbind())
            .collect()
    })
}

fn known_key<'py>(py: Python<'py>, idx: usize) -> Bound<'py, PyString> {
    match keys(py).get(idx) {
        Some(k) => k.bind(py).clone(),
        None => PyString::new(
            py,
            KEY_NAMES
                .get(idx)
                .and_then(|k| std::str::from_utf8(k).ok())
                .unwrap_or_default(),
        ),
    }
}

/// A var name as a Python string: interned for the usual names. Names are printable ASCII (V2).
pub fn key_string<'py>(py: Python<'py>, key: &[u8]) -> PyResult<Bound<'py, PyString>> {
    match key_index(key) {
        Some(i) => Ok(known_key(py, i)),
        None => latin1(py, key),
    }
}

pub use crate::pystr::latin1;

fn joiner(key: &[u8]) -> &'static [u8] {
    if key == b"HTTP_COOKIE" {
        b"; "
    } else {
        b", "
    }
}

/// The value of a var: a repeated header joined with `", "` (`"; "` for cookies) (V3).
pub fn var_value<'py>(
    py: Python<'py>,
    block: &[u8],
    vars: &[Var],
    var: &Var,
) -> PyResult<Bound<'py, PyString>> {
    latin1(py, &var_bytes(block, vars, var))
}

/// gunicorn's `secure_scheme_headers` as `(environ key, value)` in latin-1 bytes (E7): checked
/// against the vars in Rust, so a request without any of them costs no lookup.
#[derive(Debug, Clone, Default)]
pub struct SecureHeaders(Vec<SecureHeader>);

#[derive(Debug, Clone)]
struct SecureHeader {
    key: Vec<u8>,
    /// The key's index among the known names: a var with a known name is matched by index.
    known: Option<usize>,
    value: Vec<u8>,
}

impl SecureHeader {
    fn names(&self, block: &[u8], var: &Var) -> bool {
        match (self.known, var.known()) {
            (Some(a), Some(b)) => a == b,
            (None, None) => slice(block, var.raw.key) == self.key,
            _ => false,
        }
    }
}

impl SecureHeaders {
    /// From `{environ key: value}`; a value outside latin-1 can never be sent, so it is left out.
    fn from_dict(dict: &Bound<'_, PyDict>) -> PyResult<Self> {
        let mut headers = Vec::new();
        for (key, value) in dict.iter() {
            let key: String = key.extract()?;
            let value: String = value.extract()?;
            let latin = |s: &str| -> Option<Vec<u8>> {
                s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
            };
            if let (Some(key), Some(value)) = (latin(&key), latin(&value)) {
                headers.push(SecureHeader {
                    known: key_index(&key),
                    key,
                    value,
                });
            }
        }
        Ok(Self(headers))
    }

    /// The compiled headers, or None when there are none to check.
    pub fn compile(dict: Option<&Bound<'_, PyDict>>) -> PyResult<Option<Self>> {
        Ok(dict
            .map(Self::from_dict)
            .transpose()?
            .filter(|s| !s.0.is_empty()))
    }

    /// Whether the request carries one of the headers with its secure value: one pass over
    /// the headers (a repeated one is joined into its first, the one not shadowed).
    fn present(&self, head: &Head, block: &[u8]) -> bool {
        head.vars
            .iter()
            .filter(|v| !v.shadowed && v.kind == Kind::Http)
            .any(|v| {
                self.0.iter().any(|h| {
                    h.names(block, v) && var_bytes(block, &head.vars, v) == h.value.as_slice()
                })
            })
    }
}

/// The bytes of a var's value, a repeated header joined (V3).
fn var_bytes<'b>(block: &'b [u8], vars: &[Var], var: &Var) -> std::borrow::Cow<'b, [u8]> {
    let value = slice(block, var.raw.value);
    if var.next_repeat == NONE {
        return std::borrow::Cow::Borrowed(value);
    }
    let sep = joiner(slice(block, var.raw.key));
    let mut joined = value.to_vec();
    let mut next = var.next_repeat;
    while let Some(v) = vars.get(usize::from(next)) {
        joined.extend_from_slice(sep);
        joined.extend_from_slice(slice(block, v.raw.value));
        next = v.next_repeat;
    }
    std::borrow::Cow::Owned(joined)
}

/// Per-request inputs of the environ beside the vars.
pub struct Context<'a, 'py> {
    pub base: &'a Bound<'py, PyDict>,
    pub input: &'a Bound<'py, PyAny>,
    pub socket: &'a Bound<'py, PyAny>,
    /// The socket peer: the fallback for `REMOTE_ADDR`/`REMOTE_PORT` (E4).
    /// `(address, port)` as strings, made only when nginx did not send `REMOTE_ADDR`.
    pub peer: &'a dyn Fn() -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    /// gunicorn's `SCRIPT_NAME` environment variable (E3).
    pub script_name: &'a str,
    /// `secure_scheme_headers`, compiled (E7).
    pub secure_headers: Option<&'a SecureHeaders>,
    /// Whether the peer may set them (`forwarded_allow_ips`): asked only when one is present.
    pub trusted: &'a dyn Fn() -> PyResult<bool>,
    /// gunicorn itself serves TLS.
    pub is_ssl: bool,
    /// The listening address (`(host, port)`, or a unix socket's path): the fallback for
    /// `SERVER_NAME`/`SERVER_PORT` (E5).
    pub server: Option<&'a Bound<'py, PyAny>>,
}

fn is_true_flag(v: &[u8]) -> bool {
    [&b"on"[..], b"1", b"true", b"yes"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
}

/// `REQUEST_SCHEME` as sent (the last one, V3), for [`url_scheme`] outside the environ.
pub fn request_scheme<'b>(head: &Head, block: &'b [u8]) -> Option<&'b [u8]> {
    head.vars
        .iter()
        .find(|v| !v.shadowed && v.known() == Some(REQUEST_SCHEME))
        .map(|v| slice(block, v.raw.value))
}

/// `wsgi.url_scheme` by the E7 rules: the one definition, for the environ and for
/// `UWSGIRequest.scheme` at parse time. `trusted` says whether the peer may set the
/// `secure_headers` (asked only when one of them is present).
pub fn url_scheme(
    head: &Head,
    block: &[u8],
    request_scheme: Option<&[u8]>,
    secure_headers: Option<&SecureHeaders>,
    trusted: &dyn Fn() -> PyResult<bool>,
    is_ssl: bool,
) -> PyResult<&'static str> {
    match head.control_value(block, Control::UwsgiScheme) {
        Some(v) if v.eq_ignore_ascii_case(b"https") => return Ok("https"),
        Some(v) if v.eq_ignore_ascii_case(b"http") => return Ok("http"),
        _ => {}
    }
    if head
        .control_value(block, Control::Https)
        .is_some_and(is_true_flag)
    {
        return Ok("https");
    }
    if let Some(secure) = secure_headers {
        if secure.present(head, block) && trusted()? {
            return Ok("https");
        }
    }
    if request_scheme.is_some_and(|v| v.eq_ignore_ascii_case(b"https")) || is_ssl {
        return Ok("https");
    }
    Ok("http")
}

/// `SERVER_NAME`/`SERVER_PORT` when nginx did not send them, as gunicorn does for HTTP (E5):
/// the listening address; on a unix socket the Host header (port 80 or 443 when it has none),
/// else the socket path.
fn server_fallback(
    py: Python<'_>,
    env: &Bound<'_, PyDict>,
    server: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let name_key = known_key(py, control_key(Control::ServerName));
    let port_key = known_key(py, control_key(Control::ServerPort));
    let (name, port): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
        match server.map(|s| s.cast::<PyTuple>()) {
            Some(Ok(addr)) => (
                addr.get_item(0)?.str()?.into_any(),
                addr.get_item(1)?.str()?.into_any(),
            ),
            _ => {
                let host: String = match env.get_item(known_key(py, HTTP_HOST))? {
                    Some(h) => h.extract()?,
                    None => String::new(),
                };
                if host.is_empty() {
                    let path = match server {
                        Some(s) if s.cast::<PyBytes>().is_ok() => {
                            s.call_method1("decode", ("latin-1",))?
                        }
                        Some(s) if !s.is_none() => s.str()?.into_any(),
                        _ => pyo3::intern!(py, "").clone().into_any(),
                    };
                    (path, pyo3::intern!(py, "").clone().into_any())
                } else {
                    let scheme: String = match env.get_item(known_key(py, URL_SCHEME))? {
                        Some(s) => s.extract()?,
                        None => String::new(),
                    };
                    match host
                        .rsplit_once(':')
                        .filter(|(_, port)| !port.contains(']'))
                    {
                        Some((name, port)) => (
                            PyString::new(py, name).into_any(),
                            PyString::new(py, port).into_any(),
                        ),
                        None => (
                            PyString::new(py, &host).into_any(),
                            (if scheme == "https" {
                                pyo3::intern!(py, "443")
                            } else {
                                pyo3::intern!(py, "80")
                            })
                            .clone()
                            .into_any(),
                        ),
                    }
                }
            }
        };
    // Unset: absent, or the base's empty slot.
    let unset =
        |key: &Bound<'_, PyString>| env.get_item(key).map(|v| v.is_none_or(|v| v.is_none()));
    if unset(&name_key)? {
        env.set_item(&name_key, name)?;
    }
    if unset(&port_key)? {
        env.set_item(&port_key, port)?;
    }
    Ok(())
}

/// Builds the environ for one request (E1–E8); also returns its `wsgi.url_scheme`.
pub fn build<'py>(
    py: Python<'py>,
    head: &Head,
    block: &[u8],
    ctx: &Context<'_, 'py>,
) -> PyResult<(Bound<'py, PyDict>, &'static str)> {
    let env = ctx.base.copy()?;
    let mut request_scheme: Option<&[u8]> = None;
    crate::pystr::with_cache(|mut cache| -> PyResult<()> {
        for var in head.vars.iter() {
            if var.shadowed {
                continue;
            }
            let raw_key = slice(block, var.raw.key);
            let idx = match var.kind {
                Kind::HiddenHttp | Kind::Reserved => continue,
                Kind::Control(c) => Some(control_key(c)),
                Kind::Http | Kind::Other => var.known(),
            };
            let key = match idx {
                Some(i) => known_key(py, i),
                None => latin1(py, raw_key)?,
            };
            if idx == Some(REQUEST_SCHEME) {
                request_scheme = Some(slice(block, var.raw.value));
            }
            let value = match (idx, cache.as_deref_mut()) {
                (Some(i), Some(cache)) if var.next_repeat == NONE && is_cached(i) => {
                    cache.get(py, i, slice(block, var.raw.value))?
                }
                _ => var_value(py, block, &head.vars, var)?,
            };
            env.set_item(key, value)?;
        }
        Ok(())
    })?;

    // PATH_INFO and SCRIPT_NAME (E2, E3, F4).
    let path = head
        .control_value(block, Control::PathInfo)
        .unwrap_or_default();
    let script_var = head.control_value(block, Control::ScriptName);
    let script: &[u8] = script_var.unwrap_or(ctx.script_name.as_bytes());
    let mut new_path = None;
    let mut new_script = None;
    if head.header.modifier1 == 30 && !script.is_empty() {
        if let Some((keep, start)) = strip_script_name(path, script) {
            new_script = script.get(..keep);
            new_path = path.get(start..);
        }
    } else if script_var.is_none() && !script.is_empty() {
        // gunicorn's rule for its SCRIPT_NAME environment variable.
        match path.strip_prefix(script) {
            Some(rest) => new_path = Some(rest),
            None => {
                return Err(configuration_problem(
                    py,
                    format!(
                        "Request path {:?} does not start with SCRIPT_NAME {:?}",
                        String::from_utf8_lossy(path),
                        ctx.script_name
                    ),
                ))
            }
        }
        new_script = Some(script);
    }
    if let Some(p) = new_path {
        env.set_item(
            known_key(py, control_key(Control::PathInfo)),
            latin1(py, p)?,
        )?;
    } else if !head.has(Control::PathInfo) {
        env.set_item(
            known_key(py, control_key(Control::PathInfo)),
            pyo3::intern!(py, "").clone(),
        )?;
    }
    if let Some(s) = new_script {
        env.set_item(
            known_key(py, control_key(Control::ScriptName)),
            latin1(py, s)?,
        )?;
    } else if script_var.is_none() {
        env.set_item(
            known_key(py, control_key(Control::ScriptName)),
            pyo3::intern!(py, "").clone(),
        )?;
    }

    if !head.has(Control::RequestMethod) {
        env.set_item(
            known_key(py, control_key(Control::RequestMethod)),
            latin1(py, head.method(block))?,
        )?;
    }
    let empty = pyo3::intern!(py, "").clone();
    if !head.has(Control::QueryString) {
        env.set_item(known_key(py, control_key(Control::QueryString)), &empty)?;
    }
    // REMOTE_ADDR / REMOTE_PORT fall back to the socket peer (E4).
    if !head.has(Control::RemoteAddr) {
        let (peer_addr, peer_port) = (ctx.peer)()?;
        env.set_item(known_key(py, control_key(Control::RemoteAddr)), peer_addr)?;
        if !head.has(Control::RemotePort) {
            env.set_item(known_key(py, control_key(Control::RemotePort)), peer_port)?;
        }
    }
    if !head.has(Control::ServerProtocol) {
        env.set_item(
            known_key(py, control_key(Control::ServerProtocol)),
            pyo3::intern!(py, "HTTP/1.1").clone(),
        )?;
    }
    // RAW_URI (E6).
    env.set_item(
        known_key(py, RAW_URI),
        latin1(py, &head.request_uri(block))?,
    )?;
    let scheme = url_scheme(
        head,
        block,
        request_scheme,
        ctx.secure_headers,
        ctx.trusted,
        ctx.is_ssl,
    )?;
    env.set_item(
        known_key(py, URL_SCHEME),
        match scheme {
            "https" => pyo3::intern!(py, "https"),
            _ => pyo3::intern!(py, "http"),
        },
    )?;
    if !head.has(Control::ServerName) || !head.has(Control::ServerPort) {
        server_fallback(py, &env, ctx.server)?;
    }
    env.set_item(known_key(py, WSGI_INPUT), ctx.input)?;
    env.set_item(known_key(py, GUNICORN_SOCKET), ctx.socket)?;
    Ok((env, scheme))
}

/// Whether this process has logged that nginx sent no `REQUEST_METHOD` (V6).
static MISSING_METHOD_LOGGED: AtomicBool = AtomicBool::new(false);

/// Whether the warning that nginx sent no `REQUEST_METHOD` is still to be logged in this
/// process (V6): the path that logs it takes such requests until then.
pub fn missing_method_unlogged() -> bool {
    !MISSING_METHOD_LOGGED.load(Ordering::Relaxed)
}

/// True once per process, the first time it is called: the caller logs that nginx sent no
/// `REQUEST_METHOD` (V6). The environ of such a request says `GET`.
pub fn claim_missing_method_warning() -> bool {
    !MISSING_METHOD_LOGGED.swap(true, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_table_indices() {
        assert_eq!(key_index(b"RAW_URI"), Some(RAW_URI));
        assert_eq!(key_index(b"HTTP_HOST"), Some(HTTP_HOST));
        assert_eq!(key_index(b"REQUEST_SCHEME"), Some(REQUEST_SCHEME));
        assert_eq!(key_index(b"wsgi.input"), Some(WSGI_INPUT));
        assert_eq!(key_index(b"gunicorn.socket"), Some(GUNICORN_SOCKET));
        assert_eq!(key_index(b"wsgi.url_scheme"), Some(URL_SCHEME));
        for c in Control::ALL {
            let name = KEY_NAMES[control_key(c)];
            assert_eq!(Control::from_key(name), Some(c), "{name:?}");
        }
        assert_eq!(key_index(b"HTTP_NOT_LISTED"), None);
    }

    #[test]
    fn uncached_keys_are_the_per_request_ones() {
        let names: Vec<&str> = UNCACHED
            .iter()
            .map(|&i| std::str::from_utf8(KEY_NAMES[i]).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "QUERY_STRING",
                "REQUEST_URI",
                "PATH_INFO",
                "REMOTE_PORT",
                "HTTP_COOKIE",
                "HTTP_REFERER",
                "HTTP_AUTHORIZATION",
                "HTTP_IF_NONE_MATCH",
                "HTTP_IF_MODIFIED_SINCE",
                "HTTP_X_CSRFTOKEN",
                "RAW_URI",
            ]
        );
    }

    #[test]
    fn e7_true_flags() {
        for v in ["on", "ON", "1", "true", "Yes"] {
            assert!(is_true_flag(v.as_bytes()), "{v}");
        }
        for v in ["off", "0", "", "no"] {
            assert!(!is_true_flag(v.as_bytes()), "{v}");
        }
    }
}
