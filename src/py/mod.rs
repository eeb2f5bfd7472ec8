//! The Python surface over the core and the interfaces: the classes that wrap core values
//! (`Head`, `Limits`, `AllowList`) with the sans-I/O functions, and gunicorn's request object.
//! gunicorn's parser interface and `create()` are Python over these (`parser.py`, `wsgi.py`).

pub mod bindings;
pub mod request;
