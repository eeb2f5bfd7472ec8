//! Protocol errors, as plain Rust values.
//!
//! Every rejection the parser can make is one variant here, carrying the HTTP status that answers it
//! and a short reason. `exceptions.rs` is the only place these become Python exceptions.

use std::fmt;

/// Why a uwsgi packet was refused. Each variant maps to one Python exception class in
/// `gunicorn_uwsgi.errors` and one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// Malformed framing or vars (F3, V2, V3, V5, V6): 400.
    InvalidPacket(String),
    /// The peer spoke HTTP or TLS to the uwsgi port (F7): 400.
    ForeignProtocol(&'static str),
    /// modifier1 other than 0 or 30 (F4): 501.
    UnsupportedModifier(u8),
    /// `REQUEST_URI` longer than `limit_request_line` (V4): 414.
    UriTooLong { size: usize, limit: usize },
    /// Too many vars or header vars, or one too large (V4): 431.
    TooLarge(String),
    /// `CONTENT_LENGTH` over the body limit: 413.
    BodyTooLarge { size: u64, limit: u64 },
}

impl ProtocolError {
    /// The HTTP status that answers this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidPacket(_) | Self::ForeignProtocol(_) => 400,
            Self::UnsupportedModifier(_) => 501,
            Self::UriTooLong { .. } => 414,
            Self::TooLarge(_) => 431,
            Self::BodyTooLarge { .. } => 413,
        }
    }

    #[cold]
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidPacket(msg.into())
    }

    #[cold]
    pub fn too_large(msg: impl Into<String>) -> Self {
        Self::TooLarge(msg.into())
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPacket(msg) => f.write_str(msg),
            Self::ForeignProtocol(what) => write!(
                f,
                "the front end is speaking {what} to the uwsgi port: configure nginx with \
                 `uwsgi_pass` and `include uwsgi_params`, not `proxy_pass`"
            ),
            Self::UnsupportedModifier(m) => write!(
                f,
                "unsupported uwsgi modifier1 {m} (only 0 and 30, WSGI requests, are served)"
            ),
            Self::UriTooLong { size, limit } => write!(
                f,
                "REQUEST_URI is {size} bytes, over limit_request_line ({limit})"
            ),
            Self::TooLarge(msg) => f.write_str(msg),
            Self::BodyTooLarge { size, limit } => {
                write!(f, "CONTENT_LENGTH {size} is over the body limit ({limit})")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why an application's status line or headers were refused (R1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    Status(String),
    HeaderName(String),
    HeaderValue(String),
    ContentLength(String),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(
                f,
                "invalid status {s:?}: it must be a 3-digit code, a space and a reason"
            ),
            Self::HeaderName(n) => write!(f, "invalid response header name {n:?}"),
            // The value is left out on purpose: it may carry secrets.
            Self::HeaderValue(n) => write!(
                f,
                "invalid value for response header {n:?}: CR, LF, NUL and other control \
                 characters are not allowed"
            ),
            Self::ContentLength(v) => write!(f, "invalid Content-Length {v:?}"),
        }
    }
}

impl std::error::Error for ResponseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ProtocolError::invalid("x").status(), 400);
        assert_eq!(ProtocolError::ForeignProtocol("HTTP").status(), 400);
        assert_eq!(ProtocolError::UnsupportedModifier(5).status(), 501);
        assert_eq!(
            ProtocolError::UriTooLong { size: 2, limit: 1 }.status(),
            414
        );
        assert_eq!(ProtocolError::too_large("x").status(), 431);
        assert_eq!(
            ProtocolError::BodyTooLarge { size: 2, limit: 1 }.status(),
            413
        );
    }

    #[test]
    fn foreign_protocol_names_uwsgi_pass() {
        let msg = ProtocolError::ForeignProtocol("HTTP").to_string();
        assert!(msg.contains("speaking HTTP"));
        assert!(msg.contains("uwsgi_pass"));
    }
}
