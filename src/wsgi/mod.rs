//! The WSGI interface (PEP 3333): the environ, the body reader, the response writer and the
//! sync worker's serve loop. An interface folder uses the core, the socket calls and the shared
//! PyO3 helpers, never the py surface; `src/asgi/` will hold the same file names.

pub mod access;
pub mod connection;
pub mod env;
pub mod reader;
pub mod serve;
pub mod settings;
pub mod writer;
