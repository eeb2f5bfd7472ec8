//! What a var's name means to the server: the vars it interprets itself ([`Control`]), how
//! each var reaches the environ ([`Kind`]), and which repeats replace the earlier value (V3).
//! Both the known names (`keys`) and the vars parser (`vars`) use it.

/// The vars the server itself interprets: when one is repeated, the last one wins (V3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Control {
    RequestMethod,
    ContentLength,
    ContentType,
    PathInfo,
    ScriptName,
    QueryString,
    RequestUri,
    RemoteAddr,
    RemotePort,
    Https,
    UwsgiScheme,
    ServerProtocol,
    ServerName,
    ServerPort,
}

/// Number of [`Control`] variants.
pub const CONTROL_COUNT: usize = 14;

impl Control {
    /// Every control var.
    pub const ALL: [Self; CONTROL_COUNT] = [
        Self::RequestMethod,
        Self::ContentLength,
        Self::ContentType,
        Self::PathInfo,
        Self::ScriptName,
        Self::QueryString,
        Self::RequestUri,
        Self::RemoteAddr,
        Self::RemotePort,
        Self::Https,
        Self::UwsgiScheme,
        Self::ServerProtocol,
        Self::ServerName,
        Self::ServerPort,
    ];

    pub fn from_key(key: &[u8]) -> Option<Self> {
        Some(match key {
            b"REQUEST_METHOD" => Self::RequestMethod,
            b"CONTENT_LENGTH" => Self::ContentLength,
            b"CONTENT_TYPE" => Self::ContentType,
            b"PATH_INFO" => Self::PathInfo,
            b"SCRIPT_NAME" => Self::ScriptName,
            b"QUERY_STRING" => Self::QueryString,
            b"REQUEST_URI" => Self::RequestUri,
            b"REMOTE_ADDR" => Self::RemoteAddr,
            b"REMOTE_PORT" => Self::RemotePort,
            b"HTTPS" => Self::Https,
            b"UWSGI_SCHEME" => Self::UwsgiScheme,
            b"SERVER_PROTOCOL" => Self::ServerProtocol,
            b"SERVER_NAME" => Self::ServerName,
            b"SERVER_PORT" => Self::ServerPort,
            _ => return None,
        })
    }
}

/// How a var reaches the environ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Control(Control),
    /// A request header (`HTTP_*`).
    Http,
    /// A request header the environ leaves out: the body is already de-chunked and framed by
    /// `CONTENT_LENGTH` (E1).
    HiddenHttp,
    /// `wsgi.*` and `gunicorn.*`: server keys a peer may not set (E1).
    Reserved,
    /// Anything else (`DOCUMENT_ROOT`, `UWSGI_*`, custom `uwsgi_param`s): an inert string (V7).
    Other,
}

impl Kind {
    pub fn of(key: &[u8]) -> Self {
        if let Some(rest) = key.strip_prefix(b"HTTP_") {
            return match rest {
                b"CONTENT_TYPE" | b"CONTENT_LENGTH" | b"TRANSFER_ENCODING" => Self::HiddenHttp,
                _ => Self::Http,
            };
        }
        if key.starts_with(b"wsgi.") || key.starts_with(b"gunicorn.") {
            return Self::Reserved;
        }
        match Control::from_key(key) {
            Some(c) => Self::Control(c),
            None => Self::Other,
        }
    }

    pub fn is_header(self) -> bool {
        matches!(self, Self::Http | Self::HiddenHttp)
    }
}

/// The request headers nginx refuses to receive twice from a client (its table of unique
/// request headers), as vars: a repeat of one can only come from the configuration, an
/// `uwsgi_param` after `include uwsgi_params;`, so the last one wins as for a non-header var
/// (V3). `HTTP_CONTENT_LENGTH` and `HTTP_TRANSFER_ENCODING` are left out of the environ
/// anyway (E1).
const UNIQUE_HEADERS: &[&[u8]] = &[
    b"HTTP_HOST",
    b"HTTP_IF_MODIFIED_SINCE",
    b"HTTP_IF_UNMODIFIED_SINCE",
    b"HTTP_IF_MATCH",
    b"HTTP_IF_NONE_MATCH",
    b"HTTP_CONTENT_LENGTH",
    b"HTTP_CONTENT_RANGE",
    b"HTTP_IF_RANGE",
    b"HTTP_TRANSFER_ENCODING",
    b"HTTP_EXPECT",
    b"HTTP_AUTHORIZATION",
    b"HTTP_PROXY_AUTHORIZATION",
];

/// Whether a repeat of this var replaces the earlier one (V3): every var but the request
/// headers a client may repeat, which are joined instead.
pub fn last_wins(kind: Kind, key: &[u8]) -> bool {
    !kind.is_header() || UNIQUE_HEADERS.contains(&key)
}
