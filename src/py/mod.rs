//! The Python surface over the core and the interfaces: the classes that wrap core values
//! (`Head`, `Limits`, `AllowList`) with the sans-I/O functions, and gunicorn's request object
//! and parser with `create()`.

pub mod bindings;
pub mod request;
