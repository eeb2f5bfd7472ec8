//! The ASGI interface (ASGI 3.0 over uwsgi): the scope from the vars, and the request cycle
//! on the worker's event loop, which steps the application's coroutine itself. It uses the
//! same core, socket calls, settings and error boundary as the WSGI interface.

pub mod env;
pub mod serve;
