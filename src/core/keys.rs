//! The names the server knows: what nginx's `uwsgi_params` sends, the common request headers,
//! and the keys the server adds to the environ. A name's index is found once, when the vars
//! are validated, and carried to the environ, where each known name is an interned string.

use crate::core::kind::{Control, Kind};

macro_rules! interned_keys {
    ($($idx:literal => $name:literal),* $(,)?) => {
        pub const KEY_NAMES: &[&[u8]] = &[$($name),*];

        /// The index of a usual key: one `match` on byte-string patterns, which the compiler
        /// dispatches on the length before comparing bytes.
        pub fn key_index(key: &[u8]) -> Option<usize> {
            match key {
                $($name => Some($idx),)*
                _ => None,
            }
        }
    };
}

// What nginx's `uwsgi_params` sends, the common request headers, and the keys the server adds.
interned_keys!(
    0 => b"QUERY_STRING",
    1 => b"REQUEST_METHOD",
    2 => b"CONTENT_TYPE",
    3 => b"CONTENT_LENGTH",
    4 => b"REQUEST_URI",
    5 => b"PATH_INFO",
    6 => b"DOCUMENT_ROOT",
    7 => b"SERVER_PROTOCOL",
    8 => b"REQUEST_SCHEME",
    9 => b"HTTPS",
    10 => b"REMOTE_ADDR",
    11 => b"REMOTE_PORT",
    12 => b"SERVER_PORT",
    13 => b"SERVER_NAME",
    14 => b"SCRIPT_NAME",
    15 => b"UWSGI_SCHEME",
    16 => b"HTTP_HOST",
    17 => b"HTTP_USER_AGENT",
    18 => b"HTTP_ACCEPT",
    19 => b"HTTP_ACCEPT_LANGUAGE",
    20 => b"HTTP_ACCEPT_ENCODING",
    21 => b"HTTP_COOKIE",
    22 => b"HTTP_X_FORWARDED_FOR",
    23 => b"HTTP_X_FORWARDED_PROTO",
    24 => b"HTTP_X_REAL_IP",
    25 => b"HTTP_REFERER",
    26 => b"HTTP_CONNECTION",
    27 => b"HTTP_CACHE_CONTROL",
    28 => b"HTTP_AUTHORIZATION",
    29 => b"HTTP_ORIGIN",
    30 => b"HTTP_PRAGMA",
    31 => b"HTTP_IF_NONE_MATCH",
    32 => b"HTTP_IF_MODIFIED_SINCE",
    33 => b"HTTP_UPGRADE_INSECURE_REQUESTS",
    34 => b"HTTP_SEC_FETCH_DEST",
    35 => b"HTTP_SEC_FETCH_MODE",
    36 => b"HTTP_SEC_FETCH_SITE",
    37 => b"HTTP_SEC_FETCH_USER",
    38 => b"HTTP_DNT",
    39 => b"HTTP_X_REQUESTED_WITH",
    40 => b"HTTP_X_CSRFTOKEN",
    41 => b"HTTP_X_FORWARDED_HOST",
    42 => b"RAW_URI",
    43 => b"wsgi.input",
    44 => b"gunicorn.socket",
    45 => b"wsgi.url_scheme",
);

pub const REQUEST_SCHEME: usize = 8;
pub const HTTP_HOST: usize = 16;
/// The last request header of the table.
const LAST_HEADER: usize = 41;
pub const RAW_URI: usize = 42;
pub const WSGI_INPUT: usize = 43;
pub const GUNICORN_SOCKET: usize = 44;
pub const URL_SCHEME: usize = 45;

/// Number of known names.
const KEY_COUNT: usize = KEY_NAMES.len();

/// The index of a control var's name.
pub const fn control_key(c: Control) -> usize {
    match c {
        Control::QueryString => 0,
        Control::RequestMethod => 1,
        Control::ContentType => 2,
        Control::ContentLength => 3,
        Control::RequestUri => 4,
        Control::PathInfo => 5,
        Control::ServerProtocol => 7,
        Control::Https => 9,
        Control::RemoteAddr => 10,
        Control::RemotePort => 11,
        Control::ServerPort => 12,
        Control::ServerName => 13,
        Control::ScriptName => 14,
        Control::UwsgiScheme => 15,
    }
}

/// The kind of each known name, worked out when the crate is compiled from the table and
/// [`control_key`] (an index out of range fails the build, not a request).
#[allow(clippy::indexing_slicing)]
const KINDS: [Kind; KEY_COUNT] = {
    let mut kinds = [Kind::Other; KEY_COUNT];
    let mut i = HTTP_HOST;
    while i <= LAST_HEADER {
        kinds[i] = Kind::Http;
        i += 1;
    }
    let mut i = WSGI_INPUT;
    while i < KEY_COUNT {
        kinds[i] = Kind::Reserved;
        i += 1;
    }
    let mut c = 0;
    while c < Control::ALL.len() {
        kinds[control_key(Control::ALL[c])] = Kind::Control(Control::ALL[c]);
        c += 1;
    }
    kinds
};

/// How a var with a known name reaches the environ: what [`Kind::of`] says of that name.
pub fn known_kind(idx: usize) -> Kind {
    KINDS.get(idx).copied().unwrap_or(Kind::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_kinds_are_the_kinds_of_their_names() {
        for (i, name) in KEY_NAMES.iter().enumerate() {
            assert_eq!(
                known_kind(i),
                Kind::of(name),
                "{}",
                String::from_utf8_lossy(name)
            );
            assert_eq!(key_index(name), Some(i));
        }
    }
}
