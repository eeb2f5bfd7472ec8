//! `gunicorn_uwsgi._native`: the uwsgi protocol for gunicorn workers.
//!
//! Pure-Rust modules (`framing`, `vars`, `allow`, `response`, `errors`) hold the protocol and
//! their unit tests; `environ`, `bindings` and `exceptions` are the thin PyO3 layer.

pub mod allow;
pub mod bindings;
pub mod connection;
pub mod environ;
pub mod errors;
pub mod exceptions;
pub mod framing;
pub mod input;
pub mod io;
pub mod keys;
pub mod pystr;
pub mod request;
pub mod respond;
pub mod response;
pub mod server;
pub mod vars;

#[cfg(test)]
mod proptests;

use pyo3::prelude::*;

#[pymodule]
mod _native {
    #[pymodule_export]
    use crate::bindings::{
        claim_missing_method_warning, error_response, parse, response_head, AllowList, Head, Limits,
    };
    #[pymodule_export]
    use crate::connection::Connection;
    #[pymodule_export]
    use crate::input::BytesInput;
    #[pymodule_export]
    use crate::request::{create, request, EnvironSettings, Parser, Request};
    #[pymodule_export]
    use crate::respond::{write_result, Response};
    #[pymodule_export]
    use crate::server::FastServer;

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("MAX_VARS", crate::vars::MAX_VARS)?;
        m.add("HEADER_SIZE", crate::framing::HEADER_SIZE)?;
        // How a FastServer.serve batch ended.
        use crate::server::outcome;
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
