//! `gunicorn_uwsgi._native`: the uwsgi protocol for gunicorn workers.
//!
//! Layers, each using only those before it (`use crate::` never points the other way):
//!
//! - [`core`]: the protocol in pure Rust, sans-I/O, no PyO3 (framing, vars and limits, the known
//!   names, the allow list, the response head, the error enums), with its unit tests.
//! - [`net`]: the socket system calls on descriptors (no PyO3); [`exceptions`]: the one error
//!   boundary, Rust errors to Python exceptions; [`pystr`]: latin-1 bytes to `str`. These three
//!   are shared by every interface and by the py surface.
//! - [`wsgi`]: the WSGI interface (environ, body reader, response writer, serve loop).
//! - [`py`]: the Python classes over the core values, and gunicorn's request object.
//! - this file: the module declaration and its one export list.

pub mod asgi;
pub mod core;
pub mod exceptions;
pub mod net;
pub mod py;
pub mod pystr;
pub mod wsgi;

use pyo3::prelude::*;

#[pymodule]
mod _native {
    #[pymodule_export]
    use crate::asgi::serve::{AsgiServer, Cycle, Ready};
    #[pymodule_export]
    use crate::py::bindings::{
        claim_missing_method_warning, error_response, parse, reason, response_head, PyAllowList,
        PyHead, PyLimits,
    };
    #[pymodule_export]
    use crate::py::request::{request, Request};
    #[pymodule_export]
    use crate::wsgi::access::AccessLog;
    #[pymodule_export]
    use crate::wsgi::connection::Connection;
    #[pymodule_export]
    use crate::wsgi::reader::BytesInput;
    #[pymodule_export]
    use crate::wsgi::serve::FastServer;
    #[pymodule_export]
    use crate::wsgi::settings::Settings;
    #[pymodule_export]
    use crate::wsgi::writer::{write_result, Response};

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        // The Rust cycle makes gunicorn's request object for the hooks with the py surface's
        // class, which sits above the interfaces.
        crate::wsgi::serve::register_hook_request(crate::py::request::for_hooks);
        m.add("MAX_VARS", crate::core::vars::MAX_VARS)?;
        m.add("HEADER_SIZE", crate::core::framing::HEADER_SIZE)?;
        // gunicorn's default for `uwsgi_allow_ips`, where gunicorn has no such setting (A1).
        m.add(
            "DEFAULT_ALLOW_IPS",
            crate::core::allow::DEFAULT_ALLOW.to_vec(),
        )?;
        // Seconds a line of the Rust cycle's access log waits at most before it is written.
        m.add(
            "ACCESS_LOG_FLUSH_AFTER",
            crate::wsgi::access::FLUSH_AFTER.as_secs_f64(),
        )?;
        // How a FastServer.serve batch ended.
        use crate::wsgi::serve::outcome;
        for (name, code) in [
            ("SERVE_IDLE", outcome::IDLE),
            ("SERVE_FULL", outcome::FULL),
            ("SERVE_CLOSED", outcome::CLOSED),
            ("SERVE_HANDOFF", outcome::HANDOFF),
            ("SERVE_FAILED", outcome::FAILED),
            ("SERVE_STALLED", outcome::STALLED),
        ] {
            m.add(name, code)?;
        }
        Ok(())
    }
}
