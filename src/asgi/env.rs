//! The ASGI HTTP scope of a request, from its vars (S2): what the WSGI environ builder is to
//! the WSGI interface.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::core::framing::slice;
use crate::core::kind::{Control, Kind};
use crate::core::vars::{self, Head};
use crate::core::websocket;
use crate::net::Peer;
use crate::wsgi::env;
use crate::wsgi::settings::Settings;

/// The keys every HTTP scope has with the same value, prepared once per worker and copied
/// for each request.
pub fn base_scope<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    base(py, "http", "http.response.pathsend")
}

/// The same for a websocket scope (W1), which offers the denial response extension (W2).
pub fn base_websocket_scope<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    base(py, "websocket", "websocket.http.response")
}

fn base<'py>(py: Python<'py>, kind: &str, extension: &str) -> PyResult<Bound<'py, PyDict>> {
    let scope = PyDict::new(py);
    scope.set_item(pyo3::intern!(py, "type"), kind)?;
    let asgi = PyDict::new(py);
    asgi.set_item("version", "3.0")?;
    asgi.set_item("spec_version", "2.4")?;
    scope.set_item(pyo3::intern!(py, "asgi"), asgi)?;
    let extensions = PyDict::new(py);
    extensions.set_item(extension, PyDict::new(py))?;
    scope.set_item(pyo3::intern!(py, "extensions"), extensions)?;
    Ok(scope)
}

/// The value of a request header var (`HTTP_…`): the copies nginx < 1.23 sends of a repeated
/// header joined with `", "`, as nginx ≥ 1.23 joins them (V3; those a later one wins over
/// are left out).
pub fn header<'b>(head: &Head, block: &'b [u8], key: &[u8]) -> Option<std::borrow::Cow<'b, [u8]>> {
    let mut copies = head
        .vars
        .iter()
        .filter(|v| !v.superseded && slice(block, v.raw.key) == key)
        .map(|v| slice(block, v.raw.value));
    let first = copies.next()?;
    let mut joined: Option<Vec<u8>> = None;
    for more in copies {
        let all = joined.get_or_insert_with(|| first.to_vec());
        all.extend_from_slice(b", ");
        all.extend_from_slice(more);
    }
    Some(match joined {
        Some(all) => std::borrow::Cow::Owned(all),
        None => std::borrow::Cow::Borrowed(first),
    })
}

/// Whether the request asks for a websocket (W1): `Upgrade` lists `websocket`, in any case.
pub fn wants_websocket(head: &Head, block: &[u8]) -> bool {
    websocket::wants_websocket(header(head, block, b"HTTP_UPGRADE").as_deref())
}

/// The subprotocols a websocket client offers (`Sec-WebSocket-Protocol`, every copy), in its
/// order.
pub fn subprotocols(head: &Head, block: &[u8]) -> Vec<String> {
    head.vars
        .iter()
        .filter(|v| !v.superseded && slice(block, v.raw.key) == b"HTTP_SEC_WEBSOCKET_PROTOCOL")
        .flat_map(|v| websocket::parse_subprotocols(slice(block, v.raw.value)))
        .collect()
}

/// `http_version` from `SERVER_PROTOCOL` (S2): `1.0`, `1.1`, `2`, `3`; `1.1` by default.
pub fn http_version(protocol: Option<&[u8]>) -> &'static str {
    match protocol {
        Some(b"HTTP/1.0") => "1.0",
        Some(b"HTTP/2.0" | b"HTTP/2") => "2",
        Some(b"HTTP/3.0" | b"HTTP/3") => "3",
        _ => "1.1",
    }
}

/// The scope's constant strings, made once.
fn interned<'py>(py: Python<'py>, text: &'static str) -> Bound<'py, PyString> {
    match text {
        "1.0" => pyo3::intern!(py, "1.0"),
        "1.1" => pyo3::intern!(py, "1.1"),
        "2" => pyo3::intern!(py, "2"),
        "3" => pyo3::intern!(py, "3"),
        "http" => pyo3::intern!(py, "http"),
        "https" => pyo3::intern!(py, "https"),
        "ws" => pyo3::intern!(py, "ws"),
        "wss" => pyo3::intern!(py, "wss"),
        other => return PyString::new(py, other),
    }
    .clone()
}

/// The path part of a request target: up to its `?` (or `#`).
pub fn target_path(uri: &[u8]) -> &[u8] {
    let end = uri
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(uri.len());
    uri.get(..end).unwrap_or_default()
}

/// The full path and the mount point (`root_path`): `PATH_INFO` keeps the mount point as
/// nginx sends it (`$document_uri`), so `path` is `PATH_INFO`; one without it (a modifier1
/// 30 request, or a configuration that strips it) gets it put back, as current Starlette and
/// uvicorn expect `path` to be the whole path. `root_path` is `SCRIPT_NAME`, else gunicorn's
/// `root_path` setting, else its `SCRIPT_NAME` environment variable.
fn paths<'b>(head: &Head, block: &'b [u8], fallback_root: &'b str) -> (Vec<u8>, &'b [u8]) {
    let path = head
        .control_value(block, Control::PathInfo)
        .unwrap_or_default();
    let root = head
        .control_value(block, Control::ScriptName)
        .unwrap_or(fallback_root.as_bytes());
    let root = root.strip_suffix(b"/").unwrap_or(root);
    if root.is_empty() || vars::strip_script_name(path, root).is_some() || path == root {
        return (path.to_vec(), root);
    }
    let mut full = root.to_vec();
    full.extend_from_slice(path);
    (full, root)
}

/// A port number, as the scope has it (`None` when it is not one).
fn port(value: &[u8]) -> Option<u16> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The request's headers as ASGI lists them (S2): each `HTTP_*` var the environ has (E1) as a
/// lowercase name with dashes, and `content-type`/`content-length` from `CONTENT_TYPE`/
/// `CONTENT_LENGTH` when not empty, in arrival order, the copies a later one wins over left
/// out (V3).
pub fn headers<'py>(py: Python<'py>, head: &Head, block: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    let mut name = Vec::with_capacity(32);
    for var in head.vars.iter().filter(|v| !v.superseded) {
        let key = slice(block, var.raw.key);
        let value = slice(block, var.raw.value);
        let bare = match var.kind {
            // `HTTP_CONTENT_TYPE`, `HTTP_CONTENT_LENGTH` and `HTTP_TRANSFER_ENCODING` are left
            // out, as from the environ (E1): the body is de-chunked and framed by
            // `CONTENT_LENGTH`, and a second content-length would make it ambiguous.
            Kind::Http => key.get(5..).unwrap_or_default(),
            Kind::Control(Control::ContentType | Control::ContentLength) if !value.is_empty() => {
                key
            }
            _ => continue,
        };
        name.clear();
        name.extend(bare.iter().map(|&b| match b {
            b'_' => b'-',
            b => b.to_ascii_lowercase(),
        }));
        let pair = PyTuple::new(py, [PyBytes::new(py, &name), PyBytes::new(py, value)])?;
        list.append(pair)?;
    }
    Ok(list)
}

/// What a scope takes from the connection beside the vars.
pub struct Origin<'a, 'py> {
    pub peer: Peer,
    /// The listening address: a `(host, port)` tuple, or a unix socket's path.
    pub server: &'a Bound<'py, PyAny>,
    /// gunicorn's `root_path` setting (else its `SCRIPT_NAME` environment variable).
    pub root_path: &'a str,
    /// The lifespan state, shallow-copied into each scope; `None` without lifespan.
    pub state: Option<&'a Bound<'py, PyDict>>,
    /// A websocket scope (W1) rather than an HTTP one.
    pub websocket: bool,
}

/// Builds the scope of one request (S2): HTTP, or websocket (W1: `ws`/`wss`, the offered
/// `subprotocols`, no `method`) when `base` is the websocket one.
pub fn build<'py>(
    py: Python<'py>,
    base: &Bound<'py, PyDict>,
    head: &Head,
    block: &[u8],
    settings: &Settings,
    origin: &Origin<'_, 'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let scope = base.copy()?;
    let websocket = origin.websocket;
    let value = |c: Control| head.control_value(block, c);
    scope.set_item(
        pyo3::intern!(py, "http_version"),
        interned(py, http_version(value(Control::ServerProtocol))),
    )?;
    if websocket {
        scope.set_item(pyo3::intern!(py, "subprotocols"), subprotocols(head, block))?;
    } else {
        scope.set_item(
            pyo3::intern!(py, "method"),
            crate::pystr::latin1(py, head.method(block))?,
        )?;
    }
    let peer = origin.peer;
    let trusted = || Ok(peer.ip().is_none_or(|ip| settings.forwarded.allows(ip)));
    let scheme = env::url_scheme(
        head,
        block,
        env::request_scheme(head, block),
        settings.secure_headers.as_ref(),
        &trusted,
        settings.is_ssl,
    )?;
    let scheme = match (websocket, scheme) {
        (true, "https") => "wss",
        (true, _) => "ws",
        (false, scheme) => scheme,
    };
    scope.set_item(pyo3::intern!(py, "scheme"), interned(py, scheme))?;
    let (path, root) = paths(head, block, origin.root_path);
    scope.set_item(
        pyo3::intern!(py, "path"),
        PyString::new(py, &String::from_utf8_lossy(&path)),
    )?;
    let raw_path = match value(Control::RequestUri) {
        Some(uri) => target_path(uri),
        None => value(Control::PathInfo).unwrap_or_default(),
    };
    scope.set_item(pyo3::intern!(py, "raw_path"), PyBytes::new(py, raw_path))?;
    scope.set_item(
        pyo3::intern!(py, "query_string"),
        PyBytes::new(py, value(Control::QueryString).unwrap_or_default()),
    )?;
    let root_path = if root.is_empty() {
        pyo3::intern!(py, "").clone()
    } else {
        PyString::new(py, &String::from_utf8_lossy(root))
    };
    scope.set_item(pyo3::intern!(py, "root_path"), root_path)?;
    scope.set_item(pyo3::intern!(py, "headers"), headers(py, head, block)?)?;
    scope.set_item(pyo3::intern!(py, "client"), client(py, head, block, peer)?)?;
    scope.set_item(
        pyo3::intern!(py, "server"),
        server(py, head, block, origin.server)?,
    )?;
    if let Some(state) = origin.state {
        scope.set_item(pyo3::intern!(py, "state"), state.copy()?)?;
    }
    Ok(scope)
}

/// `client`: `(REMOTE_ADDR, REMOTE_PORT)` from the vars (the real client), else the socket
/// peer (E4); `None` when neither says (a unix socket without `REMOTE_ADDR`).
fn client<'py>(
    py: Python<'py>,
    head: &Head,
    block: &[u8],
    peer: Peer,
) -> PyResult<Bound<'py, PyAny>> {
    let from_vars = head
        .control_value(block, Control::RemoteAddr)
        .filter(|a| !a.is_empty());
    if let Some(addr) = from_vars {
        let port = head
            .control_value(block, Control::RemotePort)
            .and_then(port)
            .unwrap_or(0);
        return (crate::pystr::latin1(py, addr)?, port)
            .into_pyobject(py)
            .map(Bound::into_any);
    }
    match peer {
        Peer::Ip(a) => (a.ip().to_string(), a.port())
            .into_pyobject(py)
            .map(Bound::into_any),
        Peer::Unix => Ok(py.None().into_bound(py)),
    }
}

/// `server`: `(SERVER_NAME, SERVER_PORT)` from the vars (nginx's view), else the listening
/// address (E5); a unix listener without `SERVER_NAME` gives `(path, None)`, and `None` when
/// nothing is known.
fn server<'py>(
    py: Python<'py>,
    head: &Head,
    block: &[u8],
    listening: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let tcp = listening.cast::<PyTuple>().ok();
    let name = match head
        .control_value(block, Control::ServerName)
        .filter(|n| !n.is_empty())
    {
        Some(n) => Some(crate::pystr::latin1(py, n)?.into_any()),
        None => match &tcp {
            Some(t) => Some(t.get_item(0)?),
            None if listening.is_none() => None,
            None if listening.cast::<PyBytes>().is_ok() => {
                Some(listening.call_method1("decode", ("latin-1",))?)
            }
            None => Some(listening.str()?.into_any()),
        },
    };
    let Some(name) = name else {
        return Ok(py.None().into_bound(py));
    };
    let port = match head
        .control_value(block, Control::ServerPort)
        .and_then(port)
    {
        Some(p) => p.into_pyobject(py)?.into_any(),
        None => match &tcp {
            Some(t) => t.get_item(1)?,
            None => py.None().into_bound(py),
        },
    };
    (name, port).into_pyobject(py).map(Bound::into_any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s2_http_version() {
        assert_eq!(http_version(Some(b"HTTP/1.0")), "1.0");
        assert_eq!(http_version(Some(b"HTTP/1.1")), "1.1");
        assert_eq!(http_version(Some(b"HTTP/2.0")), "2");
        assert_eq!(http_version(Some(b"HTTP/3.0")), "3");
        assert_eq!(http_version(None), "1.1");
        assert_eq!(http_version(Some(b"junk")), "1.1");
    }

    #[test]
    fn w1_upgrade_and_subprotocols() {
        let (h, b) = head_of(&[
            (b"HTTP_UPGRADE", b"WebSocket"),
            (b"HTTP_SEC_WEBSOCKET_PROTOCOL", b"chat, superchat"),
        ]);
        assert!(wants_websocket(&h, &b));
        assert_eq!(subprotocols(&h, &b), ["chat", "superchat"]);
        let (h, b) = head_of(&[(b"HTTP_UPGRADE", b"h2c")]);
        assert!(!wants_websocket(&h, &b));
        assert!(subprotocols(&h, &b).is_empty());
    }

    #[test]
    fn s2_raw_path_is_the_target_path() {
        assert_eq!(target_path(b"/a%2Fb?x=1"), b"/a%2Fb");
        assert_eq!(target_path(b"/plain"), b"/plain");
        assert_eq!(target_path(b"/f#frag"), b"/f");
        assert_eq!(target_path(b""), b"");
    }

    fn head_of(pairs: &[(&[u8], &[u8])]) -> (Head, Vec<u8>) {
        let packet = crate::core::framing::tests::packet(0, pairs);
        let head = match vars::parse_head(&packet, &vars::Limits::GUNICORN) {
            Ok(vars::Progress::Done(h)) => h,
            other => panic!("{other:?}"),
        };
        (head, packet[crate::core::framing::HEADER_SIZE..].to_vec())
    }

    #[test]
    fn s2_root_path_and_full_path() {
        let (h, b) = head_of(&[(b"PATH_INFO", b"/app/x"), (b"SCRIPT_NAME", b"/app")]);
        assert_eq!(paths(&h, &b, ""), (b"/app/x".to_vec(), &b"/app"[..]));
        let (h, b) = head_of(&[(b"PATH_INFO", b"/x"), (b"SCRIPT_NAME", b"/app")]);
        assert_eq!(paths(&h, &b, ""), (b"/app/x".to_vec(), &b"/app"[..]));
        let (h, b) = head_of(&[(b"PATH_INFO", b"/x")]);
        assert_eq!(paths(&h, &b, ""), (b"/x".to_vec(), &b""[..]));
        assert_eq!(paths(&h, &b, "/mnt"), (b"/mnt/x".to_vec(), &b"/mnt"[..]));
        let (h, b) = head_of(&[(b"PATH_INFO", b"/app"), (b"SCRIPT_NAME", b"/app/")]);
        assert_eq!(paths(&h, &b, ""), (b"/app".to_vec(), &b"/app"[..]));
    }
}
