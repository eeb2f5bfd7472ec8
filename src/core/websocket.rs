//! WebSocket, server side, sans-I/O (W1–W4): the opening handshake (RFC 6455 §4), the
//! permessage-deflate negotiation and (de)compression (RFC 7692), the frame decoder and the frame
//! encoder.
//!
//! Bytes in, decisions out: [`Decoder::feed`] takes whatever the socket gave, however it was cut,
//! and [`Decoder::next_event`] hands back whole messages and control frames, or the close code
//! that fails the connection. The encoder returns the bytes to write. Nothing here owns a socket.
//!
//! Payloads are unmasked eight bytes at a time with a 64-bit mask word ([`apply_mask`]), and
//! are copied once: from the input buffer into the message (or, compressed, into a scratch buffer
//! that the inflater reads). A text message is checked for UTF-8 as its bytes arrive, so an
//! impossible byte fails the connection at once, even in the middle of a frame.

use crate::core::errors::ResponseError;
use crate::core::response_head::is_hop_by_hop;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::fmt;

// ---------------------------------------------------------------------------------------------
// The opening handshake (W1, W2)
// ---------------------------------------------------------------------------------------------

/// The GUID RFC 6455 §1.3 appends to the client's key before hashing it.
pub const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The one protocol version there is (RFC 6455 §4.1): the value of `Sec-WebSocket-Version`.
pub const VERSION: &str = "13";

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
fn base64_encode(data: &[u8]) -> String {
    let symbol = |n: u32, shift: u32| {
        let i = ((n >> shift) & 0x3f) as usize;
        char::from(BASE64.get(i).copied().unwrap_or(b'A'))
    };
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = byte(0) << 16 | byte(1) << 8 | byte(2);
        out.push(symbol(n, 18));
        out.push(symbol(n, 12));
        out.push(if chunk.len() > 1 { symbol(n, 6) } else { '=' });
        out.push(if chunk.len() > 2 { symbol(n, 0) } else { '=' });
    }
    out
}

fn is_base64_symbol(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Whether a `Sec-WebSocket-Key` is the base64 of 16 bytes (RFC 6455 §4.1): 22 symbols and
/// `==`. Like most servers, the two unused bits of the last symbol are not checked.
fn is_valid_key(key: &[u8]) -> bool {
    match trim_ows(key) {
        [symbols @ .., b'=', b'='] => {
            symbols.len() == 22 && symbols.iter().all(|&b| is_base64_symbol(b))
        }
        _ => false,
    }
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Strips spaces and tabs from both ends.
fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !is_ows(b)).map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

/// RFC 9110 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|&b| is_tchar(b))
}

/// The non-empty elements of a comma-separated header (RFC 9110 §5.6.1), trimmed.
fn list_elements(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    header
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn has_token(header: Option<&[u8]>, token: &[u8]) -> bool {
    header.is_some_and(|h| list_elements(h).any(|e| e.eq_ignore_ascii_case(token)))
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2): the base64 of
/// the SHA-1 of the key (spaces and tabs around it ignored) followed by [`GUID`].
pub fn accept_key(client_key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(trim_ows(client_key));
    sha.update(GUID);
    base64_encode(&sha.digest().bytes())
}

/// Whether a request asks for a WebSocket (W1): its `Upgrade` header lists the token
/// `websocket`, in any case. Such a request is then checked with [`check_handshake`].
pub fn wants_websocket(upgrade: Option<&[u8]>) -> bool {
    has_token(upgrade, b"websocket")
}

/// Why an opening handshake was refused (W1): each answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The method is not `GET`.
    Method,
    /// `Upgrade` does not list `websocket`.
    Upgrade,
    /// `Connection` does not list `upgrade`.
    Connection,
    /// `Sec-WebSocket-Key` is missing or is not the base64 of 16 bytes.
    Key,
    /// `Sec-WebSocket-Version` is missing or is not 13.
    Version,
}

impl HandshakeError {
    /// The HTTP status that answers this error.
    pub fn status(&self) -> u16 {
        400
    }

    /// Headers the 400 should carry: a version mismatch names the version served
    /// (RFC 6455 §4.4).
    pub fn response_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Version => &[("Sec-WebSocket-Version", VERSION)],
            _ => &[],
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Method => "WebSocket handshake: the method must be GET",
            Self::Upgrade => "WebSocket handshake: Upgrade must list websocket",
            Self::Connection => "WebSocket handshake: Connection must list upgrade",
            Self::Key => "WebSocket handshake: Sec-WebSocket-Key must be the base64 of 16 bytes",
            Self::Version => "WebSocket handshake: Sec-WebSocket-Version must be 13",
        })
    }
}

impl std::error::Error for HandshakeError {}

/// Checks an opening handshake (W1, RFC 6455 §4.2.1): a `GET`, `Upgrade` listing `websocket`
/// and `Connection` listing `upgrade` (any case), a key that is the base64 of 16 bytes and
/// version 13. Headers are passed as the raw values of their vars, `None` when absent.
pub fn check_handshake(
    method: &[u8],
    upgrade: Option<&[u8]>,
    connection: Option<&[u8]>,
    key: Option<&[u8]>,
    version: Option<&[u8]>,
) -> Result<(), HandshakeError> {
    if method != b"GET" {
        return Err(HandshakeError::Method);
    }
    if !wants_websocket(upgrade) {
        return Err(HandshakeError::Upgrade);
    }
    if !has_token(connection, b"upgrade") {
        return Err(HandshakeError::Connection);
    }
    if !key.is_some_and(is_valid_key) {
        return Err(HandshakeError::Key);
    }
    if version.map(trim_ows) != Some(VERSION.as_bytes()) {
        return Err(HandshakeError::Version);
    }
    Ok(())
}

/// The subprotocols a client offers in `Sec-WebSocket-Protocol`, in order (W1): the tokens of
/// the comma-separated list; an element that is not a token is left out.
pub fn parse_subprotocols(header: &[u8]) -> Vec<String> {
    list_elements(header)
        .filter(|e| is_token(e))
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

/// Headers the server sets in the 101 itself, dropped from the application's extra headers
/// along with the hop-by-hop ones (R2): a second copy would contradict the negotiation.
const OWN_HEADERS: &[&str] = &[
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
];

/// RFC 9110 field-vchar, SP and HTAB: no CR, LF, NUL or other control character (R1).
fn is_field_value(v: &[u8]) -> bool {
    v.iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The head of the 101 that accepts a handshake (W2): `HTTP/1.1 101 Switching Protocols`,
/// `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Accept` for `key`, the chosen
/// subprotocol and extensions when given, then the application's headers checked by the R1
/// rules (a name that is not a token, or a value with CR, LF, NUL or another control character,
/// is an error) less the hop-by-hop ones and those the server sets itself (`Sec-WebSocket-*`,
/// `Content-Length`), and the blank line.
pub fn accept_response(
    key: &[u8],
    subprotocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[(&[u8], &[u8])],
) -> Result<Vec<u8>, ResponseError> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    push_field(
        &mut out,
        b"Sec-WebSocket-Accept",
        accept_key(key).as_bytes(),
    );
    if let Some(protocol) = subprotocol {
        if !is_token(protocol.as_bytes()) {
            return Err(ResponseError::HeaderValue(
                "Sec-WebSocket-Protocol".to_owned(),
            ));
        }
        push_field(&mut out, b"Sec-WebSocket-Protocol", protocol.as_bytes());
    }
    if let Some(ext) = extensions {
        let ext = trim_ows(ext.as_bytes());
        if !is_field_value(ext) {
            return Err(ResponseError::HeaderValue(
                "Sec-WebSocket-Extensions".to_owned(),
            ));
        }
        if !ext.is_empty() {
            push_field(&mut out, b"Sec-WebSocket-Extensions", ext);
        }
    }
    for &(name, value) in extra_headers {
        let shown = || String::from_utf8_lossy(name).into_owned();
        if !is_token(name) {
            return Err(ResponseError::HeaderName(shown()));
        }
        if !is_field_value(value) {
            return Err(ResponseError::HeaderValue(shown()));
        }
        // A token is ASCII.
        let text = std::str::from_utf8(name).unwrap_or_default();
        if is_hop_by_hop(text) || OWN_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(text)) {
            continue;
        }
        push_field(&mut out, name, trim_ows(value));
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// permessage-deflate negotiation (W4, RFC 7692 §5, §7.1)
// ---------------------------------------------------------------------------------------------

/// The name of the extension (RFC 7692 §7).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The agreed permessage-deflate parameters (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message, so the server resets its inflater.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, as a power of two (9..=15 in practice, see
    /// [`negotiate_deflate`]).
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, as a power of two (8..=15). The inflater always keeps a
    /// 32 KiB window, which reads any smaller one.
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// Context takeover both ways and 32 KiB windows: what an offer without parameters gets.
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// Splits `s` on `sep` where it is not inside a quoted string (RFC 9110 §5.6.4).
fn split_unquoted(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(s.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    parts.push(s.get(start..).unwrap_or_default());
    parts
}

/// One extension parameter: a token name and an optional token or quoted-string value
/// (RFC 6455 §9.1), the quotes and escapes removed. `None` when malformed.
fn parse_param(raw: &[u8]) -> Option<(&[u8], Option<Vec<u8>>)> {
    let raw = trim_ows(raw);
    let (name, value) = match raw.iter().position(|&b| b == b'=') {
        None => (raw, None),
        Some(eq) => (trim_ows(raw.get(..eq)?), Some(trim_ows(raw.get(eq + 1..)?))),
    };
    if !is_token(name) {
        return None;
    }
    let value = match value {
        None => None,
        Some([b'"', inner @ .., b'"']) => {
            let mut out = Vec::with_capacity(inner.len());
            let mut escaped = false;
            for &b in inner {
                if escaped || b != b'\\' {
                    if !escaped && b == b'"' {
                        return None;
                    }
                    out.push(b);
                    escaped = false;
                } else {
                    escaped = true;
                }
            }
            if escaped {
                return None;
            }
            Some(out)
        }
        Some(token) if is_token(token) => Some(token.to_vec()),
        Some(_) => return None,
    };
    Some((name, value))
}

/// A window size parameter: 1*DIGIT without a leading zero, 8..=15 (RFC 7692 §7.1.2).
fn window_bits(value: &[u8]) -> Option<u8> {
    match value {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// Reads one permessage-deflate offer's parameters; `None` when the offer is unacceptable: an
/// unknown or repeated parameter, a value where none belongs, a bad window size (RFC 7692
/// §7.1), or `server_max_window_bits=8`, which the deflate backend cannot honour.
fn accept_offer(params: &[&[u8]]) -> Option<(DeflateParams, String)> {
    let mut agreed = DeflateParams::default();
    let mut seen = [false; 4];
    let mut server_bits = None;
    let mut client_bits = None;
    for raw in params {
        let (name, value) = parse_param(raw)?;
        let index = [
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        ]
        .iter()
        .position(|known| known.as_bytes().eq_ignore_ascii_case(name))?;
        let first = seen.get_mut(index)?;
        if *first {
            return None;
        }
        *first = true;
        match (index, value) {
            (0, None) => agreed.server_no_context_takeover = true,
            (1, None) => agreed.client_no_context_takeover = true,
            (2, Some(v)) => {
                let bits = window_bits(&v)?;
                if bits < 9 {
                    return None;
                }
                agreed.server_max_window_bits = bits;
                server_bits = Some(bits);
            }
            (3, None) => {}
            (3, Some(v)) => {
                let bits = window_bits(&v)?;
                agreed.client_max_window_bits = bits;
                client_bits = Some(bits);
            }
            _ => return None,
        }
    }
    let mut response = String::from(PERMESSAGE_DEFLATE);
    if agreed.server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if agreed.client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = server_bits {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    if let Some(bits) = client_bits {
        response.push_str(&format!("; client_max_window_bits={bits}"));
    }
    Some((agreed, response))
}

/// Chooses the first acceptable permessage-deflate offer in a client's
/// `Sec-WebSocket-Extensions` (several headers joined with commas) (W4, RFC 7692 §5): its
/// parameters and the extension string for the 101's `Sec-WebSocket-Extensions`. The server
/// accepts what the client asks for: `server_no_context_takeover` and `server_max_window_bits`
/// are honoured, `client_no_context_takeover` and a `client_max_window_bits` value are echoed.
/// An offer asking for `server_max_window_bits=8` is declined (zlib's raw deflate has no
/// 256-byte window), so a later offer may be taken. `None` when nothing is acceptable.
pub fn negotiate_deflate(header: &[u8]) -> Option<(DeflateParams, String)> {
    split_unquoted(header, b',').into_iter().find_map(|offer| {
        let parts = split_unquoted(offer, b';');
        let (name, params) = parts.split_first()?;
        if !trim_ows(name).eq_ignore_ascii_case(PERMESSAGE_DEFLATE.as_bytes()) {
            return None;
        }
        accept_offer(params)
    })
}

// ---------------------------------------------------------------------------------------------
// permessage-deflate compression (W4, RFC 7692 §7.2)
// ---------------------------------------------------------------------------------------------

/// The empty stored block a sync flush ends with: stripped from each compressed message by the
/// sender and appended again by the receiver (RFC 7692 §7.2.1, §7.2.2).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How much output the inflater asks room for at a time.
const INFLATE_CHUNK: usize = 32 * 1024;

/// Compresses outgoing messages (RFC 7692 §7.2.1).
pub struct Deflater {
    inner: Compress,
    no_context_takeover: bool,
    broken: bool,
}

impl Deflater {
    /// A raw-deflate compressor with a window of `2^window_bits` bytes (clamped to 9..=15:
    /// zlib's raw deflate has no 256-byte window, and [`negotiate_deflate`] never agrees to
    /// one), reset after each message when `no_context_takeover`.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Self::with_level(
            window_bits,
            no_context_takeover,
            Compression::default().level(),
        )
    }

    /// [`Deflater::new`] with a zlib compression level: 0 (stored) to 9 (smallest), higher
    /// values taken as 9.
    pub fn with_level(window_bits: u8, no_context_takeover: bool, level: u32) -> Self {
        Self {
            inner: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                window_bits.clamp(9, 15),
            ),
            no_context_takeover,
            broken: false,
        }
    }

    /// Starts over as if new (an empty window), keeping the buffers: for reusing a deflater.
    pub fn reset(&mut self) {
        self.inner.reset();
        self.broken = false;
    }

    /// One message's compressed payload, without the `00 00 ff ff` tail. `None` when the
    /// compressor failed: the message is then sent uncompressed, and so is every later one,
    /// since the peer's inflater can no longer follow this one's window.
    pub fn compress(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        if self.broken {
            return None;
        }
        let out = self.run(payload);
        if out.is_none() {
            self.broken = true;
        }
        out
    }

    fn run(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(64));
            }
            let before = self.inner.total_in();
            self.inner
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .ok()?;
            let consumed = usize::try_from(self.inner.total_in() - before).ok()?;
            input = input.get(consumed..)?;
            // The flush is complete once all input is in and the output was not filled.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&DEFLATE_TAIL) {
            out.truncate(out.len() - DEFLATE_TAIL.len());
        } else if out.is_empty() {
            // An empty message right after a flush: zlib writes nothing, but the peer appends
            // the tail and needs the empty stored block's first byte before it (RFC 7692
            // §7.2.3.6).
            out.push(0x00);
        }
        if self.no_context_takeover {
            self.inner.reset();
        }
        Some(out)
    }
}

/// Why an incoming compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message would pass the size limit: the output was cut at the limit.
    TooBig,
    /// The compressed data is not valid deflate.
    Corrupt,
}

/// Inflates incoming messages (RFC 7692 §7.2.2) as their frames arrive, with a limit on the
/// inflated size (W4).
pub struct Inflater {
    inner: Decompress,
    no_context_takeover: bool,
}

impl Inflater {
    /// A raw-deflate inflater with a 32 KiB window (enough for any window the client uses),
    /// reset after each message when `no_context_takeover`.
    pub fn new(no_context_takeover: bool) -> Self {
        Self {
            inner: Decompress::new(false),
            no_context_takeover,
        }
    }

    /// Inflates the next piece of a message's compressed payload onto `out`. When the message
    /// would grow past `limit` bytes, `out` is cut at `limit` and the answer is
    /// [`InflateError::TooBig`]: what is kept is the same however the input was split.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let mut input = input;
        loop {
            // One byte of room past the limit shows that the message passes it.
            let want = limit
                .saturating_sub(out.len())
                .saturating_add(1)
                .min(INFLATE_CHUNK);
            out.reserve(want);
            let (before_in, before_out) = (self.inner.total_in(), out.len());
            let result = self.inner.decompress_vec(input, out, FlushDecompress::None);
            let consumed = usize::try_from(self.inner.total_in() - before_in)
                .map_err(|_| InflateError::Corrupt)?;
            input = input.get(consumed..).unwrap_or_default();
            if out.len() > limit {
                out.truncate(limit);
                return Err(InflateError::TooBig);
            }
            let status = result.map_err(|_| InflateError::Corrupt)?;
            if status == Status::StreamEnd {
                // A block with BFINAL set ends the deflate stream; what follows starts a new one.
                self.inner.reset(false);
                if input.is_empty() {
                    return Ok(());
                }
                continue;
            }
            let full = out.len() == out.capacity();
            if input.is_empty() && !full {
                return Ok(());
            }
            if consumed == 0 && out.len() == before_out && !full {
                return Err(InflateError::Corrupt);
            }
        }
    }

    /// Ends a message: inflates the `00 00 ff ff` tail the sender stripped, then resets when
    /// there is no context takeover.
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        self.inflate(&DEFLATE_TAIL, out, limit)?;
        if self.no_context_takeover {
            self.inner.reset(false);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Frames (W3, RFC 6455 §5)
// ---------------------------------------------------------------------------------------------

/// A frame's opcode (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xa,
}

impl Opcode {
    /// The opcode of the low four bits of a frame's first byte; `None` for a reserved one.
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits & 0x0f {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xa => Some(Self::Pong),
            _ => None,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Close codes (RFC 6455 §7.4.1).
pub mod close_code {
    /// The purpose of the connection was fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (a server shutting down).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message of a type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Received, never sent: the close frame had no code.
    pub const NO_STATUS: u16 = 1005;
    /// Received, never sent: the connection dropped without a close frame.
    pub const ABNORMAL: u16 = 1006;
    /// Data inconsistent with the message type (a text message that is not UTF-8).
    pub const INVALID_DATA: u16 = 1007;
    /// A message that violates the endpoint's policy.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// The server met an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Whether a code may appear in a close frame (RFC 6455 §7.4): 1000–1003 and 1007–1014 from
/// the IANA registry, 3000–4999 for libraries and applications. 1004–1006 and 1015 are
/// reserved, the rest of 1016–2999 is unassigned, and nothing under 1000 or from 5000 is valid.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Why the decoder failed the connection: the code and a short reason, ready for the close
/// frame the server sends before it closes (RFC 6455 §7.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    /// The close code: 1002, 1007 or 1009.
    pub code: u16,
    /// A short explanation, sent as the close reason.
    pub reason: &'static str,
}

impl CloseReason {
    /// The close frame that reports this failure to the peer.
    pub fn frame(&self) -> Vec<u8> {
        close_frame(Some(self.code), self.reason)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

const fn protocol_error(reason: &'static str) -> CloseReason {
    CloseReason {
        code: close_code::PROTOCOL_ERROR,
        reason,
    }
}

const UNMASKED: CloseReason = protocol_error("client frame not masked");
const RESERVED_BITS: CloseReason = protocol_error("reserved bits set");
const UNKNOWN_OPCODE: CloseReason = protocol_error("reserved opcode");
const CONTROL_TOO_LONG: CloseReason = protocol_error("control frame over 125 bytes");
const FRAGMENTED_CONTROL: CloseReason = protocol_error("fragmented control frame");
const STRAY_CONTINUATION: CloseReason = protocol_error("continuation without a message");
const EXPECTED_CONTINUATION: CloseReason = protocol_error("new message inside a fragmented one");
const LENGTH_HIGH_BIT: CloseReason = protocol_error("frame length has its high bit set");
const CLOSE_ONE_BYTE: CloseReason = protocol_error("close frame of one byte");
const BAD_CLOSE_CODE: CloseReason = protocol_error("invalid close code");
const INVALID_UTF8: CloseReason = CloseReason {
    code: close_code::INVALID_DATA,
    reason: "text message is not UTF-8",
};
const INVALID_CLOSE_REASON: CloseReason = CloseReason {
    code: close_code::INVALID_DATA,
    reason: "close reason is not UTF-8",
};
const BAD_DEFLATE: CloseReason = CloseReason {
    code: close_code::INVALID_DATA,
    reason: "invalid compressed data",
};
const TOO_BIG: CloseReason = CloseReason {
    code: close_code::TOO_BIG,
    reason: "message too big",
};

/// What the decoder found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole text message, reassembled from its fragments.
    Text(String),
    /// A whole binary message, reassembled from its fragments.
    Binary(Vec<u8>),
    /// A ping: answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// The peer's close frame: its code (`None` when the frame had none, 1005 to an
    /// application) and reason. Answer with a close frame carrying the same code. The decoder
    /// reads nothing after it.
    Close(Option<u16>, String),
}

/// XORs `data` with `mask`, starting `phase` bytes into the mask's cycle (RFC 6455 §5.3):
/// eight bytes at a time with a 64-bit mask word, then the tail byte by byte. Applying it twice
/// gives the data back.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], phase: usize) {
    let mut mask = mask;
    mask.rotate_left(phase % 4);
    let [a, b, c, d] = mask;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the mask's cycle starts over there.
    for (byte, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

/// Appends `src` to `dst` and unmasks the new bytes.
fn unmask_onto(dst: &mut Vec<u8>, src: &[u8], mask: [u8; 4], phase: usize) {
    let start = dst.len();
    dst.extend_from_slice(src);
    if let Some(tail) = dst.get_mut(start..) {
        apply_mask(tail, mask, phase);
    }
}

/// Checks the bytes of a text message received so far, from `checked` on: an impossible byte
/// fails at once; an incomplete sequence at the end may still be completed by the next bytes.
fn check_utf8(data: &[u8], checked: &mut usize) -> Result<(), CloseReason> {
    let rest = data.get(*checked..).unwrap_or_default();
    match std::str::from_utf8(rest) {
        Ok(_) => {
            *checked = data.len();
            Ok(())
        }
        Err(e) if e.error_len().is_none() => {
            *checked += e.valid_up_to();
            Ok(())
        }
        Err(_) => Err(INVALID_UTF8),
    }
}

/// A frame whose header has been read and whose payload is still arriving.
#[derive(Debug)]
struct Frame {
    opcode: Opcode,
    fin: bool,
    remaining: u64,
    mask: [u8; 4],
    /// Payload bytes seen so far, modulo 4: where the mask's cycle stands.
    phase: usize,
}

/// A data message being reassembled.
#[derive(Debug)]
struct Message {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    /// How much of `data` is known to be good UTF-8 (text messages).
    checked: usize,
    /// Whether any compressed byte arrived.
    fed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closed,
    Failed(CloseReason),
}

/// How much room a message buffer gets up front from a frame's declared length.
const RESERVE_UP_FRONT: u64 = 64 * 1024;

/// The frame decoder for a server's side of a connection (W3, W4).
///
/// Feed it bytes as they arrive with [`feed`](Self::feed), then call
/// [`next_event`](Self::next_event) until it says `Ok(None)`: the events, and the first error,
/// are the same however the input was split. After an error every call returns that error;
/// after a close frame the decoder reads nothing more.
pub struct Decoder {
    /// The size limit of a message, `usize::MAX` when unlimited.
    limit: usize,
    inflater: Option<Inflater>,
    input: Vec<u8>,
    pos: usize,
    frame: Option<Frame>,
    message: Option<Message>,
    control: Vec<u8>,
    scratch: Vec<u8>,
    status: State,
}

impl Decoder {
    /// A decoder that fails a message over `max_message_size` bytes (0: no limit) with 1009;
    /// with `deflate`, permessage-deflate with context takeover was negotiated.
    pub fn new(max_message_size: usize, deflate: bool) -> Self {
        let params = DeflateParams::default();
        Self::with_deflate(max_message_size, deflate.then_some(&params))
    }

    /// A decoder for the permessage-deflate parameters agreed by [`negotiate_deflate`], or
    /// without compression for `None`.
    pub fn with_deflate(max_message_size: usize, deflate: Option<&DeflateParams>) -> Self {
        Self {
            limit: if max_message_size == 0 {
                usize::MAX
            } else {
                max_message_size
            },
            inflater: deflate.map(|p| Inflater::new(p.client_no_context_takeover)),
            input: Vec::new(),
            pos: 0,
            frame: None,
            message: None,
            control: Vec::with_capacity(125),
            scratch: Vec::new(),
            status: State::Open,
        }
    }

    /// Adds bytes read from the peer. Ignored once the connection failed or the peer closed.
    pub fn feed(&mut self, data: &[u8]) {
        if self.status != State::Open {
            return;
        }
        self.compact();
        self.input.extend_from_slice(data);
    }

    /// Whether the peer's close frame was read.
    pub fn is_closed(&self) -> bool {
        self.status == State::Closed
    }

    /// Input bytes held that no event has used yet (a partial header, or a payload not yet
    /// asked for).
    pub fn buffered(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    /// The next event: `Ok(None)` when more input is needed (or after the peer's close), `Err`
    /// with the close code that fails the connection.
    pub fn next_event(&mut self) -> Result<Option<Event>, CloseReason> {
        match self.status {
            State::Failed(reason) => return Err(reason),
            State::Closed => return Ok(None),
            State::Open => {}
        }
        match self.step() {
            Ok(event) => {
                if let Some(Event::Close(..)) = event {
                    self.status = State::Closed;
                    self.drop_buffers();
                }
                Ok(event)
            }
            Err(reason) => {
                self.status = State::Failed(reason);
                self.drop_buffers();
                Err(reason)
            }
        }
    }

    fn drop_buffers(&mut self) {
        self.input = Vec::new();
        self.pos = 0;
        self.frame = None;
        self.message = None;
        self.scratch = Vec::new();
    }

    /// Moves the unread input to the front of the buffer.
    fn compact(&mut self) {
        let pos = self.pos.min(self.input.len());
        if pos == self.input.len() {
            self.input.clear();
        } else if pos > 0 {
            self.input.drain(..pos);
        }
        self.pos = 0;
    }

    fn step(&mut self) -> Result<Option<Event>, CloseReason> {
        loop {
            if self.frame.is_none() {
                match self.read_header()? {
                    Some(frame) => self.frame = Some(frame),
                    None => {
                        self.compact();
                        return Ok(None);
                    }
                }
            }
            let Some(frame) = self.frame.as_mut() else {
                continue;
            };
            let available = self.input.len().saturating_sub(self.pos);
            // At most `available`, so it fits in usize.
            let take = frame.remaining.min(available as u64) as usize;
            if take == 0 && frame.remaining > 0 {
                self.compact();
                return Ok(None);
            }
            let end = self.pos + take;
            let chunk = self.input.get(self.pos..end).unwrap_or_default();
            frame.remaining -= take as u64;
            let frame_done = frame.remaining == 0;
            if frame.opcode.is_control() {
                unmask_onto(&mut self.control, chunk, frame.mask, frame.phase);
            } else if let Some(message) = self.message.as_mut() {
                let last = frame_done && frame.fin;
                absorb(
                    message,
                    self.inflater.as_mut(),
                    &mut self.scratch,
                    chunk,
                    (frame.mask, frame.phase),
                    self.limit,
                    last,
                )?;
            }
            frame.phase = (frame.phase + take) % 4;
            self.pos = end;
            if frame_done {
                if let Some(frame) = self.frame.take() {
                    if let Some(event) = self.end_frame(&frame)? {
                        return Ok(Some(event));
                    }
                }
            }
        }
    }

    /// Reads and checks a frame header at the read position (W3); `Ok(None)` until it is whole.
    /// The checks run in the order the bytes come, so a bad first byte fails before the rest
    /// of the header arrives.
    fn read_header(&mut self) -> Result<Option<Frame>, CloseReason> {
        let buf = self.input.get(self.pos..).unwrap_or_default();
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let fin = first & 0x80 != 0;
        let rsv1 = first & 0x40 != 0;
        if first & 0x30 != 0 {
            return Err(RESERVED_BITS);
        }
        let opcode = Opcode::from_bits(first).ok_or(UNKNOWN_OPCODE)?;
        if opcode.is_control() {
            if rsv1 {
                return Err(RESERVED_BITS);
            }
            if !fin {
                return Err(FRAGMENTED_CONTROL);
            }
        } else if opcode == Opcode::Continuation {
            if self.message.is_none() {
                return Err(STRAY_CONTINUATION);
            }
            if rsv1 {
                return Err(RESERVED_BITS);
            }
        } else {
            if self.message.is_some() {
                return Err(EXPECTED_CONTINUATION);
            }
            if rsv1 && self.inflater.is_none() {
                return Err(RESERVED_BITS);
            }
        }
        let Some(&second) = buf.get(1) else {
            return Ok(None);
        };
        if second & 0x80 == 0 {
            return Err(UNMASKED);
        }
        let short = second & 0x7f;
        if opcode.is_control() {
            if short > 125 {
                return Err(CONTROL_TOO_LONG);
            }
            if opcode == Opcode::Close && short == 1 {
                return Err(CLOSE_ONE_BYTE);
            }
        }
        let (length, at) = match short {
            126 => match buf.get(2..4) {
                Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 4),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                Some(bytes) => (u64::from_be_bytes(bytes), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if length >> 63 != 0 {
            return Err(LENGTH_HIGH_BIT);
        }
        let compressed = match (&self.message, opcode) {
            (Some(message), Opcode::Continuation) => message.compressed,
            _ => rsv1,
        };
        if !opcode.is_control() && !compressed {
            // The declared length is checked before any of the payload is held (W3).
            let held = self.message.as_ref().map_or(0, |m| m.data.len());
            if (held as u64).saturating_add(length) > self.limit as u64 {
                return Err(TOO_BIG);
            }
        }
        let Some(&[m0, m1, m2, m3]) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        self.pos += at + 4;
        match opcode {
            Opcode::Text | Opcode::Binary => {
                let room = if compressed {
                    0
                } else {
                    length.min(RESERVE_UP_FRONT) as usize
                };
                self.message = Some(Message {
                    text: opcode == Opcode::Text,
                    compressed,
                    data: Vec::with_capacity(room),
                    checked: 0,
                    fed: false,
                });
            }
            Opcode::Continuation => {}
            Opcode::Close | Opcode::Ping | Opcode::Pong => self.control.clear(),
        }
        Ok(Some(Frame {
            opcode,
            fin,
            remaining: length,
            mask: [m0, m1, m2, m3],
            phase: 0,
        }))
    }

    /// What a frame whose payload is all in says.
    fn end_frame(&mut self, frame: &Frame) -> Result<Option<Event>, CloseReason> {
        match frame.opcode {
            Opcode::Ping => Ok(Some(Event::Ping(std::mem::take(&mut self.control)))),
            Opcode::Pong => Ok(Some(Event::Pong(std::mem::take(&mut self.control)))),
            Opcode::Close => parse_close(&self.control).map(Some),
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                if !frame.fin {
                    return Ok(None);
                }
                let Some(mut message) = self.message.take() else {
                    return Ok(None);
                };
                // An empty compressed payload is not valid deflate even with the tail; taken
                // as the empty message its sender meant, it leaves the window as it was.
                if message.compressed && message.fed {
                    if let Some(inflater) = self.inflater.as_mut() {
                        inflated(
                            inflater.finish(&mut message.data, self.limit),
                            &mut message,
                            false,
                        )?;
                    }
                }
                if message.text {
                    String::from_utf8(message.data)
                        .map(|text| Some(Event::Text(text)))
                        .map_err(|_| INVALID_UTF8)
                } else {
                    Ok(Some(Event::Binary(message.data)))
                }
            }
        }
    }
}

/// Adds a piece of a data frame's payload to its message: unmasked onto the message, or
/// unmasked into `scratch` and inflated onto it. A text message is checked as it grows, except
/// for the piece that ends it, which the final conversion checks.
fn absorb(
    message: &mut Message,
    inflater: Option<&mut Inflater>,
    scratch: &mut Vec<u8>,
    chunk: &[u8],
    (mask, phase): ([u8; 4], usize),
    limit: usize,
    last: bool,
) -> Result<(), CloseReason> {
    match inflater {
        Some(inflater) if message.compressed => {
            if chunk.is_empty() {
                return Ok(());
            }
            message.fed = true;
            scratch.clear();
            unmask_onto(scratch, chunk, mask, phase);
            let result = inflater.inflate(scratch, &mut message.data, limit);
            inflated(result, message, !last)
        }
        _ => {
            unmask_onto(&mut message.data, chunk, mask, phase);
            if message.text && !last {
                check_utf8(&message.data, &mut message.checked)?;
            }
            Ok(())
        }
    }
}

/// Turns an inflate result into the decoder's verdict. Past the limit, the bytes kept (up to
/// the limit) are checked for UTF-8 first, so the verdict does not depend on how the inflater's
/// output was cut.
fn inflated(
    result: Result<(), InflateError>,
    message: &mut Message,
    check: bool,
) -> Result<(), CloseReason> {
    match result {
        Ok(()) if message.text && check => check_utf8(&message.data, &mut message.checked),
        Ok(()) => Ok(()),
        Err(InflateError::TooBig) => {
            if message.text {
                check_utf8(&message.data, &mut message.checked)?;
            }
            Err(TOO_BIG)
        }
        Err(InflateError::Corrupt) => Err(BAD_DEFLATE),
    }
}

/// A close frame's payload (RFC 6455 §5.5.1): nothing, or a valid code and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Event, CloseReason> {
    match payload {
        [] => Ok(Event::Close(None, String::new())),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(BAD_CLOSE_CODE);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| INVALID_CLOSE_REASON)?;
            Ok(Event::Close(Some(code), reason.to_owned()))
        }
        [_] => Err(CLOSE_ONE_BYTE),
    }
}

// ---------------------------------------------------------------------------------------------
// The encoder
// ---------------------------------------------------------------------------------------------

/// The most a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

fn write_head(out: &mut Vec<u8>, first: u8, len: usize, masked: bool) {
    let mask_bit = if masked { 0x80 } else { 0 };
    out.push(first);
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends a server frame (unmasked, RFC 6455 §5.1) to `out`.
pub fn encode_into(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], fin: bool, rsv1: bool) {
    let first = if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 } | opcode as u8;
    out.reserve(payload.len() + 10);
    write_head(out, first, payload.len(), false);
    out.extend_from_slice(payload);
}

/// A server frame (unmasked, RFC 6455 §5.1).
pub fn encode(opcode: Opcode, payload: &[u8], fin: bool, rsv1: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    encode_into(&mut out, opcode, payload, fin, rsv1);
    out
}

/// Any frame, as a client would send it: `first` is the whole first byte (FIN, RSV bits and
/// opcode, unchecked), and the payload is masked with `mask` when there is one. For tests,
/// fuzzing and clients.
pub fn encode_raw(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    write_head(&mut out, first, payload.len(), mask.is_some());
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            unmask_onto(&mut out, payload, mask, 0);
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A whole, uncompressed text message.
pub fn text_frame(text: &str) -> Vec<u8> {
    encode(Opcode::Text, text.as_bytes(), true, false)
}

/// A whole, uncompressed binary message.
pub fn binary_frame(data: &[u8]) -> Vec<u8> {
    encode(Opcode::Binary, data, true, false)
}

/// A ping; a payload over 125 bytes is cut there.
pub fn ping_frame(payload: &[u8]) -> Vec<u8> {
    let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
    encode(Opcode::Ping, payload, true, false)
}

/// A pong (the answer to a ping carries its payload); a payload over 125 bytes is cut there.
pub fn pong_frame(payload: &[u8]) -> Vec<u8> {
    let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
    encode(Opcode::Pong, payload, true, false)
}

/// A close frame. With a code that may be sent ([`is_valid_close_code`]) it carries the code
/// and the reason, cut at a character boundary to fit 125 bytes; with `None`, or a code that
/// may not appear on the wire (1005, 1006, 1015, …), it is empty (no status).
pub fn close_frame(code: Option<u16>, reason: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
    if let Some(code) = code.filter(|&c| is_valid_close_code(c)) {
        payload.extend_from_slice(&code.to_be_bytes());
        let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        payload.extend_from_slice(reason.get(..cut).unwrap_or_default().as_bytes());
    }
    encode(Opcode::Close, &payload, true, false)
}

/// Encodes the server's data messages, compressed when permessage-deflate was agreed (W4).
pub struct Encoder {
    deflater: Option<Deflater>,
}

impl Encoder {
    /// An encoder for the agreed permessage-deflate parameters, or without compression.
    pub fn new(deflate: Option<&DeflateParams>) -> Self {
        Self {
            deflater: deflate
                .map(|p| Deflater::new(p.server_max_window_bits, p.server_no_context_takeover)),
        }
    }

    /// Whether messages are compressed.
    pub fn compresses(&self) -> bool {
        self.deflater.as_ref().is_some_and(|d| !d.broken)
    }

    /// One whole data message (`Text` or `Binary`; any other opcode is written as given,
    /// uncompressed), compressed when agreed.
    pub fn message(&mut self, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let data = matches!(opcode, Opcode::Text | Opcode::Binary);
        match self.deflater.as_mut().filter(|_| data) {
            Some(deflater) => match deflater.compress(payload) {
                Some(compressed) => encode(opcode, &compressed, true, true),
                None => encode(opcode, payload, true, false),
            },
            None => encode(opcode, payload, true, false),
        }
    }

    /// A whole text message.
    pub fn text(&mut self, text: &str) -> Vec<u8> {
        self.message(Opcode::Text, text.as_bytes())
    }

    /// A whole binary message.
    pub fn binary(&mut self, data: &[u8]) -> Vec<u8> {
        self.message(Opcode::Binary, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        encode_raw(first, payload, Some(MASK))
    }

    /// Feeds everything, then drains the decoder.
    fn decode_with(decoder: &mut Decoder, data: &[u8]) -> (Vec<Event>, Option<CloseReason>) {
        decoder.feed(data);
        drain(decoder)
    }

    fn drain(decoder: &mut Decoder) -> (Vec<Event>, Option<CloseReason>) {
        let mut events = Vec::new();
        loop {
            match decoder.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => return (events, None),
                Err(r) => return (events, Some(r)),
            }
        }
    }

    fn decode(data: &[u8]) -> (Vec<Event>, Option<CloseReason>) {
        decode_with(&mut Decoder::new(0, false), data)
    }

    /// The close code the input fails with.
    fn fails(data: &[u8]) -> u16 {
        decode(data).1.map_or(0, |r| r.code)
    }

    fn bytewise(decoder: &mut Decoder, data: &[u8]) -> (Vec<Event>, Option<CloseReason>) {
        let mut events = Vec::new();
        for b in data {
            decoder.feed(std::slice::from_ref(b));
            let (mut got, err) = drain(decoder);
            events.append(&mut got);
            if err.is_some() {
                return (events, err);
            }
        }
        (events, None)
    }

    // --- handshake ---

    #[test]
    fn w1_accept_key_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn base64_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), coded);
        }
        assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn w1_handshake_checks() {
        let key = Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..]);
        let ok = |m: &[u8], u: Option<&[u8]>, c: Option<&[u8]>, k, v: Option<&[u8]>| {
            check_handshake(m, u, c, k, v)
        };
        let ws = Some(&b"websocket"[..]);
        let up = Some(&b"Upgrade"[..]);
        let v13 = Some(&b"13"[..]);
        assert_eq!(ok(b"GET", ws, up, key, v13), Ok(()));
        assert_eq!(
            ok(
                b"GET",
                Some(b"WebSocket"),
                Some(b"keep-alive, upgrade"),
                key,
                v13
            ),
            Ok(())
        );
        assert_eq!(
            ok(b"GET", Some(b"h2c, WEBSOCKET"), Some(b"UPGRADE"), key, v13),
            Ok(())
        );
        assert_eq!(ok(b"POST", ws, up, key, v13), Err(HandshakeError::Method));
        assert_eq!(ok(b"get", ws, up, key, v13), Err(HandshakeError::Method));
        assert_eq!(ok(b"GET", None, up, key, v13), Err(HandshakeError::Upgrade));
        assert_eq!(
            ok(b"GET", Some(b"websockets"), up, key, v13),
            Err(HandshakeError::Upgrade)
        );
        assert_eq!(
            ok(b"GET", ws, None, key, v13),
            Err(HandshakeError::Connection)
        );
        assert_eq!(
            ok(b"GET", ws, Some(b"keep-alive"), key, v13),
            Err(HandshakeError::Connection)
        );
        assert_eq!(ok(b"GET", ws, up, None, v13), Err(HandshakeError::Key));
        for bad in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZQ===",
            b"dGhlIHNhbXBsZSBub25jZ!==",
            b"dGhlIHNhbXBsZSBub25jZQ==dG",
            // The base64 of 15 and of 20 bytes.
            b"dGhlIHNhbXBsZSBub25j",
            b"dGhlIHNhbXBsZSBub25jZXh4eHg=",
        ] {
            assert_eq!(
                ok(b"GET", ws, up, Some(bad), v13),
                Err(HandshakeError::Key),
                "{bad:?}"
            );
        }
        assert_eq!(
            ok(b"GET", ws, up, Some(b" dGhlIHNhbXBsZSBub25jZQ== "), v13),
            Ok(())
        );
        assert_eq!(ok(b"GET", ws, up, key, None), Err(HandshakeError::Version));
        for bad in [&b"8"[..], b"12", b"13, 8", b"", b"013"] {
            assert_eq!(
                ok(b"GET", ws, up, key, Some(bad)),
                Err(HandshakeError::Version)
            );
        }
        assert_eq!(HandshakeError::Key.status(), 400);
        assert_eq!(
            HandshakeError::Version.response_headers(),
            &[("Sec-WebSocket-Version", "13")]
        );
        assert!(HandshakeError::Method.response_headers().is_empty());
        assert!(HandshakeError::Connection.to_string().contains("upgrade"));
    }

    #[test]
    fn w1_wants_websocket() {
        assert!(wants_websocket(Some(b"websocket")));
        assert!(wants_websocket(Some(b"WebSocket")));
        assert!(wants_websocket(Some(b"foo , websocket")));
        assert!(!wants_websocket(Some(b"h2c")));
        assert!(!wants_websocket(None));
    }

    #[test]
    fn w1_subprotocols() {
        assert_eq!(
            parse_subprotocols(b"chat, superchat ,, v2.json"),
            vec!["chat", "superchat", "v2.json"]
        );
        assert_eq!(parse_subprotocols(b"a b, c"), vec!["c"]);
        assert!(parse_subprotocols(b"").is_empty());
    }

    #[test]
    fn w2_accept_response() {
        let key = b"dGhlIHNhbXBsZSBub25jZQ==";
        let head = accept_response(key, None, None, &[]).unwrap();
        assert_eq!(
            head,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        let head = accept_response(
            key,
            Some("chat"),
            Some("permessage-deflate; client_max_window_bits=10"),
            &[
                (b"Set-Cookie", b"a=b"),
                (b"Connection", b"close"),
                (b"upgrade", b"h2c"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Sec-WebSocket-Protocol", b"other"),
                (b"sec-websocket-accept", b"x"),
                (b"Content-Length", b"0"),
                (b"X-Empty", b"  "),
            ],
        )
        .unwrap();
        let text = String::from_utf8(head).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n\
             Set-Cookie: a=b\r\nX-Empty: \r\n\r\n"
        );
        for (name, value) in [
            (&b"Bad Name"[..], &b"v"[..]),
            (b"", b"v"),
            (b"X-A:", b"v"),
            (b"X-Split", b"a\r\nInjected: 1"),
            (b"X-Lf", b"a\nb"),
            (b"X-Nul", b"a\0b"),
            (b"X-Del", b"a\x7fb"),
        ] {
            assert!(
                accept_response(key, None, None, &[(name, value)]).is_err(),
                "{name:?}: {value:?}"
            );
        }
        assert!(accept_response(key, Some("a b"), None, &[]).is_err());
        assert!(accept_response(key, Some(""), None, &[]).is_err());
        assert!(accept_response(key, None, Some("x\r\ny"), &[]).is_err());
        assert!(matches!(
            accept_response(key, None, None, &[(b"X y", b"1")]),
            Err(ResponseError::HeaderName(n)) if n == "X y"
        ));
    }

    // --- permessage-deflate negotiation ---

    fn negotiated(header: &str) -> Option<(DeflateParams, String)> {
        negotiate_deflate(header.as_bytes())
    }

    #[test]
    fn w4_negotiate_plain_and_browser_offers() {
        let (p, r) = negotiated("permessage-deflate").unwrap();
        assert_eq!(p, DeflateParams::default());
        assert_eq!(r, "permessage-deflate");
        // What browsers send.
        let (p, r) = negotiated("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(p, DeflateParams::default());
        assert_eq!(r, "permessage-deflate");
        assert!(negotiated("").is_none());
        assert!(negotiated("x-webkit-deflate-frame").is_none());
        assert!(negotiated("permessage-deflated").is_none());
        let (_, r) = negotiated("Permessage-Deflate").unwrap();
        assert_eq!(r, "permessage-deflate");
    }

    #[test]
    fn w4_negotiate_parameters() {
        let (p, r) = negotiated(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=\"12\"",
        )
        .unwrap();
        assert_eq!(
            p,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 10,
                client_max_window_bits: 12,
            }
        );
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
        for bits in 9..=15u8 {
            let offer = format!("permessage-deflate; server_max_window_bits={bits}");
            assert_eq!(negotiated(&offer).unwrap().0.server_max_window_bits, bits);
        }
        for bits in 8..=15u8 {
            let offer = format!("permessage-deflate; client_max_window_bits={bits}");
            assert_eq!(negotiated(&offer).unwrap().0.client_max_window_bits, bits);
        }
    }

    #[test]
    fn w4_negotiate_unacceptable_offers() {
        for offer in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; server_max_window_bits=\"1 0\"",
            // zlib cannot compress with a 256-byte window.
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=x",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; mystery",
            "permessage-deflate; a b",
            "permessage-deflate; =1",
            "permessage-deflate; client_max_window_bits=\"10",
        ] {
            assert!(negotiated(offer).is_none(), "{offer}");
        }
    }

    #[test]
    fn w4_negotiate_first_acceptable_offer() {
        let (p, r) = negotiated(
            "x-foo, permessage-deflate; mystery, permessage-deflate; server_max_window_bits=8, \
             permessage-deflate; client_no_context_takeover, permessage-deflate",
        )
        .unwrap();
        assert!(p.client_no_context_takeover);
        assert_eq!(r, "permessage-deflate; client_no_context_takeover");
        // A comma inside a quoted value does not split offers.
        let (p, _) = negotiated(
            "x-foo; a=\"1, permessage-deflate\", permessage-deflate; server_max_window_bits=11",
        )
        .unwrap();
        assert_eq!(p.server_max_window_bits, 11);
    }

    // --- compression ---

    fn inflate_all(inflater: &mut Inflater, compressed: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        inflater.inflate(compressed, &mut out, usize::MAX).unwrap();
        inflater.finish(&mut out, usize::MAX).unwrap();
        out
    }

    #[test]
    fn w4_deflate_round_trip_with_context_takeover() {
        let text = b"Hello, hello, hello WebSocket, hello permessage-deflate!".repeat(20);
        let mut deflater = Deflater::new(15, false);
        let mut inflater = Inflater::new(false);
        let first = deflater.compress(&text).unwrap();
        let second = deflater.compress(&text).unwrap();
        assert!(first.len() < text.len());
        assert!(!first.ends_with(&DEFLATE_TAIL));
        // The second copy refers back to the first.
        assert!(second.len() < first.len());
        assert_eq!(inflate_all(&mut inflater, &first), text);
        assert_eq!(inflate_all(&mut inflater, &second), text);
    }

    #[test]
    fn w4_deflate_reset_starts_over() {
        let text = b"said once, said twice".repeat(4);
        let mut deflater = Deflater::new(15, false);
        let first = deflater.compress(&text).unwrap();
        assert_ne!(deflater.compress(&text).unwrap(), first);
        deflater.reset();
        assert_eq!(deflater.compress(&text).unwrap(), first);
    }

    #[test]
    fn w4_deflate_levels() {
        let text = b"level after level after level".repeat(8);
        for level in [0, 1, 5, 9, 42] {
            let mut deflater = Deflater::with_level(15, false, level);
            let mut inflater = Inflater::new(false);
            for _ in 0..2 {
                let compressed = deflater.compress(&text).unwrap();
                assert_eq!(
                    inflate_all(&mut inflater, &compressed),
                    text,
                    "level {level}"
                );
            }
        }
    }

    #[test]
    fn w4_deflate_no_context_takeover_resets() {
        let text = b"the same message again and again".repeat(10);
        let mut deflater = Deflater::new(9, true);
        let first = deflater.compress(&text).unwrap();
        let second = deflater.compress(&text).unwrap();
        assert_eq!(first, second);
        // Each message inflates on its own.
        assert_eq!(inflate_all(&mut Inflater::new(true), &second), text);
        let mut inflater = Inflater::new(true);
        assert_eq!(inflate_all(&mut inflater, &first), text);
        assert_eq!(inflate_all(&mut inflater, &second), text);
        // An empty message.
        let empty = deflater.compress(b"").unwrap();
        assert_eq!(empty, [0x00]);
        assert_eq!(inflate_all(&mut inflater, &empty), b"");
    }

    #[test]
    fn w4_deflate_empty_messages_between_others() {
        let mut deflater = Deflater::new(12, false);
        let mut inflater = Inflater::new(false);
        let random: Vec<u8> = (0..49u32).map(|i| (i * 97 + 13) as u8 ^ 0x5a).collect();
        for message in [&b"first message"[..], b"", b"", &random, b"", b"last"] {
            let compressed = deflater.compress(message).unwrap();
            assert_eq!(inflate_all(&mut inflater, &compressed), message);
        }
        // RFC 7692 §7.2.3.6: an empty message is one 0x00 byte. A peer that sends no byte at
        // all gets an empty message too, and the window is kept.
        let mut data = frame(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        data.extend(frame(0xc1, &[0x00]));
        data.extend(frame(0xc1, &[]));
        data.extend(frame(0x41, &[]));
        data.extend(frame(0x80, &[]));
        data.extend(frame(0xc1, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
        let (events, err) = decode_with(&mut Decoder::new(0, true), &data);
        assert_eq!(err, None);
        let texts = ["Hello", "", "", "", "Hello"];
        assert_eq!(events, texts.map(|t| Event::Text(t.into())));
    }

    #[test]
    fn w4_inflate_limit_and_corruption() {
        let data = vec![b'a'; 100_000];
        let compressed = Deflater::new(15, false).compress(&data).unwrap();
        assert!(compressed.len() < 1000);
        let mut out = Vec::new();
        let mut inflater = Inflater::new(false);
        assert_eq!(
            inflater.inflate(&compressed, &mut out, 99_999),
            Err(InflateError::TooBig)
        );
        assert_eq!(out.len(), 99_999);
        let mut out = Vec::new();
        let mut inflater = Inflater::new(false);
        inflater.inflate(&compressed, &mut out, 100_000).unwrap();
        inflater.finish(&mut out, 100_000).unwrap();
        assert_eq!(out, data);
        // BTYPE 11 is reserved.
        let mut out = Vec::new();
        assert_eq!(
            Inflater::new(false).inflate(&[0xff, 0xff], &mut out, 100),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn w4_inflate_rfc7692_examples() {
        // RFC 7692 §7.2.3.1 and §7.2.3.2: "Hello" twice with a shared window.
        let mut inflater = Inflater::new(false);
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            b"Hello"
        );
        // §7.2.3.3: an uncompressed block. §7.2.3.5: two blocks; BFINAL set.
        assert_eq!(
            inflate_all(
                &mut inflater,
                &[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00]
            ),
            b"Hello"
        );
        let mut fresh = Inflater::new(false);
        assert_eq!(
            inflate_all(
                &mut fresh,
                &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]
            ),
            b"Hello"
        );
    }

    // --- masking ---

    #[test]
    fn w3_masking_round_trip_every_length_and_phase() {
        for len in 0..=70usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            for phase in 0..4 {
                let mut masked = data.clone();
                apply_mask(&mut masked, MASK, phase);
                let expected: Vec<u8> = data
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ MASK[(i + phase) % 4])
                    .collect();
                assert_eq!(masked, expected, "len {len} phase {phase}");
                apply_mask(&mut masked, MASK, phase);
                assert_eq!(masked, data);
            }
            // Through the wire format, whole and byte by byte.
            let wire = frame(0x82, &data);
            assert_eq!(decode(&wire).0, vec![Event::Binary(data.clone())]);
            assert_eq!(
                bytewise(&mut Decoder::new(0, false), &wire).0,
                vec![Event::Binary(data.clone())]
            );
        }
    }

    // --- decoding ---

    #[test]
    fn w3_rfc_examples() {
        // RFC 6455 §5.7: a masked "Hello".
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(decode(&hello).0, vec![Event::Text("Hello".into())]);
        assert_eq!(frame(0x81, b"Hello"), hello);
        // Unmasked, it is a protocol error from a client.
        assert_eq!(fails(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]), 1002);
        // A fragmented unmasked text in the RFC, here masked.
        let mut two = frame(0x01, b"Hel");
        two.extend(frame(0x80, b"lo"));
        assert_eq!(decode(&two).0, vec![Event::Text("Hello".into())]);
    }

    #[test]
    fn w3_unmasked_frames_are_1002() {
        for first in [0x81u8, 0x82, 0x89, 0x8a, 0x88] {
            assert_eq!(fails(&encode_raw(first, b"x", None)), 1002);
        }
        // Decided from the second byte alone.
        assert_eq!(fails(&[0x81, 0x05]), 1002);
    }

    #[test]
    fn w3_reserved_bits_are_1002() {
        for rsv in [0x40u8, 0x20, 0x10, 0x70] {
            assert_eq!(fails(&frame(0x81 | rsv, b"x")), 1002, "{rsv:#x}");
        }
        // With deflate: RSV2/RSV3 still fail, RSV1 only on the first frame of a data message.
        let with = |data: &[u8]| {
            decode_with(&mut Decoder::new(0, true), data)
                .1
                .map(|r| r.code)
        };
        assert_eq!(with(&frame(0xa1, b"x")), Some(1002));
        assert_eq!(with(&frame(0x91, b"x")), Some(1002));
        assert_eq!(with(&frame(0xc9, b"")), Some(1002));
        assert_eq!(with(&frame(0xc8, b"")), Some(1002));
        let mut cont = frame(0x41, &[0xf2, 0x48]);
        cont.extend(frame(0xc0, &[0xcd]));
        assert_eq!(with(&cont), Some(1002));
        // Decided from the first byte alone.
        assert_eq!(fails(&[0xc1]), 1002);
    }

    #[test]
    fn w3_unknown_opcodes_are_1002() {
        for op in (3u8..=7).chain(11..=15) {
            assert_eq!(fails(&frame(0x80 | op, b"")), 1002, "opcode {op}");
        }
        assert_eq!(fails(&[0x83]), 1002);
    }

    #[test]
    fn w3_control_frames_long_or_fragmented_are_1002() {
        assert_eq!(fails(&frame(0x89, &[0; 126])), 1002);
        assert_eq!(fails(&frame(0x8a, &[0; 200])), 1002);
        let (events, err) = decode(&frame(0x89, &[7; 125]));
        assert_eq!(events, vec![Event::Ping(vec![7; 125])]);
        assert!(err.is_none());
        for op in [0x08u8, 0x09, 0x0a] {
            assert_eq!(fails(&frame(op, b"")), 1002);
        }
    }

    #[test]
    fn w3_continuation_rules_are_1002() {
        assert_eq!(fails(&frame(0x80, b"x")), 1002);
        assert_eq!(fails(&frame(0x00, b"x")), 1002);
        let mut data = frame(0x01, b"a");
        data.extend(frame(0x81, b"b"));
        assert_eq!(fails(&data), 1002);
        let mut data = frame(0x02, b"a");
        data.extend(frame(0x02, b"b"));
        assert_eq!(fails(&data), 1002);
        // A continuation after a finished message.
        let mut data = frame(0x81, b"a");
        data.extend(frame(0x80, b"b"));
        let (events, err) = decode(&data);
        assert_eq!(events, vec![Event::Text("a".into())]);
        assert_eq!(err.map(|r| r.code), Some(1002));
    }

    #[test]
    fn w3_control_frames_between_fragments() {
        let mut data = frame(0x01, b"one ");
        data.extend(frame(0x89, b"ping"));
        data.extend(frame(0x00, b"two "));
        data.extend(frame(0x8a, b"pong"));
        data.extend(frame(0x80, b"three"));
        let expected = vec![
            Event::Ping(b"ping".to_vec()),
            Event::Pong(b"pong".to_vec()),
            Event::Text("one two three".into()),
        ];
        assert_eq!(decode(&data), (expected.clone(), None));
        assert_eq!(
            bytewise(&mut Decoder::new(0, false), &data),
            (expected, None)
        );
    }

    #[test]
    fn w3_invalid_utf8_is_1007() {
        assert_eq!(fails(&frame(0x81, b"\xff")), 1007);
        assert_eq!(fails(&frame(0x81, b"ok\xc3")), 1007);
        assert_eq!(fails(&frame(0x81, b"\xed\xa0\x80")), 1007); // a surrogate
        assert_eq!(fails(&frame(0x81, b"\xf4\x90\x80\x80")), 1007); // past U+10FFFF
        assert_eq!(fails(&frame(0x81, b"\xc0\xaf")), 1007); // overlong
                                                            // Binary messages are not checked.
        assert_eq!(
            decode(&frame(0x82, b"\xff")).0,
            vec![Event::Binary(vec![0xff])]
        );
        // Incomplete at the end of the message, over fragments.
        let mut data = frame(0x01, b"a\xe2\x82");
        data.extend(frame(0x80, b""));
        assert_eq!(fails(&data), 1007);
    }

    #[test]
    fn w3_utf8_split_across_fragments() {
        // "€" is e2 82 ac, "𝄞" is f0 9d 84 9e.
        let mut data = frame(0x01, b"price: \xe2");
        data.extend(frame(0x00, b"\x82"));
        data.extend(frame(0x00, b"\xac, clef: \xf0\x9d"));
        data.extend(frame(0x80, b"\x84\x9e"));
        let expected = vec![Event::Text("price: €, clef: 𝄞".into())];
        assert_eq!(decode(&data).0, expected);
        assert_eq!(bytewise(&mut Decoder::new(0, false), &data).0, expected);
    }

    #[test]
    fn w3_invalid_utf8_fails_before_the_message_ends() {
        // In a first fragment: no need for the rest of the message.
        assert_eq!(fails(&frame(0x01, b"ok \xff")), 1007);
        // An impossible continuation at a fragment boundary.
        let mut data = frame(0x01, b"\xe2");
        data.extend(frame(0x00, b"A"));
        assert_eq!(fails(&data), 1007);
        // In the middle of a frame, before the frame is whole.
        let whole = frame(0x81, b"abc\xffdefghijklmnop");
        let mut decoder = Decoder::new(0, false);
        decoder.feed(&whole[..6 + 4]);
        assert_eq!(decoder.next_event().map_err(|r| r.code), Err(1007));
        // But an incomplete sequence so far is no error.
        let whole = frame(0x81, b"abc\xe2\x82\xacdef");
        let mut decoder = Decoder::new(0, false);
        decoder.feed(&whole[..6 + 5]);
        assert_eq!(decoder.next_event(), Ok(None));
        decoder.feed(&whole[6 + 5..]);
        assert_eq!(
            decoder.next_event(),
            Ok(Some(Event::Text("abc€def".into())))
        );
    }

    #[test]
    fn w3_message_over_the_limit_is_1009() {
        let mut decoder = Decoder::new(10, false);
        assert_eq!(
            decode_with(&mut decoder, &frame(0x82, &[1; 10])).0,
            vec![Event::Binary(vec![1; 10])]
        );
        // Only the header is needed.
        let mut decoder = Decoder::new(10, false);
        let big = frame(0x82, &[1; 11]);
        decoder.feed(&big[..6]);
        assert_eq!(decoder.next_event().map_err(|r| r.code), Err(1009));
        let mut decoder = Decoder::new(1 << 20, false);
        decoder.feed(&[0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(decoder.next_event().map_err(|r| r.code), Err(1009));
        // Over fragments.
        let mut data = frame(0x01, b"12345");
        data.extend(frame(0x80, b"678901"));
        assert_eq!(
            decode_with(&mut Decoder::new(10, false), &data)
                .1
                .map(|r| r.code),
            Some(1009)
        );
        // Control frames are not counted.
        let mut data = frame(0x01, b"12345");
        data.extend(frame(0x89, b"123456789"));
        data.extend(frame(0x80, b"67890"));
        let (events, err) = decode_with(&mut Decoder::new(10, false), &data);
        assert!(err.is_none());
        assert_eq!(events.last(), Some(&Event::Text("1234567890".into())));
        // 0 is no limit.
        let data = frame(0x82, &[0; 70_000]);
        assert_eq!(decode_with(&mut Decoder::new(0, false), &data).1, None);
    }

    #[test]
    fn w3_length_high_bit_is_1002() {
        let head = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(fails(&head), 1002);
        assert_eq!(
            decode_with(&mut Decoder::new(10, false), &head)
                .1
                .map(|r| r.code),
            Some(1002)
        );
    }

    #[test]
    fn w3_16_and_64_bit_lengths() {
        for len in [125usize, 126, 127, 200, 65535, 65536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let wire = frame(0x82, &payload);
            let head = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(wire.len(), head + 4 + len);
            assert_eq!(decode(&wire).0, vec![Event::Binary(payload)], "{len}");
        }
        // Our own frames use the same lengths.
        assert_eq!(&binary_frame(&[0; 126])[..4], &[0x82, 126, 0, 126]);
        assert_eq!(
            &binary_frame(&[0; 65536])[..10],
            &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        // A non-minimal length is accepted.
        let mut wire = vec![0x82, 0xfe, 0, 3];
        wire.extend_from_slice(&MASK);
        let mut payload = b"abc".to_vec();
        apply_mask(&mut payload, MASK, 0);
        wire.extend(payload);
        assert_eq!(decode(&wire).0, vec![Event::Binary(b"abc".to_vec())]);
    }

    #[test]
    fn w3_close_frames() {
        assert_eq!(
            decode(&frame(0x88, b"")).0,
            vec![Event::Close(None, String::new())]
        );
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice("bye ☺".as_bytes());
        assert_eq!(
            decode(&frame(0x88, &payload)).0,
            vec![Event::Close(Some(1000), "bye ☺".into())]
        );
        // A close payload of one byte, decided from the header.
        assert_eq!(fails(&frame(0x88, b"\x03")), 1002);
        assert_eq!(fails(&[0x88, 0x81]), 1002);
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(fails(&frame(0x88, &code.to_be_bytes())), 1002, "{code}");
        }
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000,
            4999,
        ] {
            assert_eq!(
                decode(&frame(0x88, &code.to_be_bytes())),
                (vec![Event::Close(Some(code), String::new())], None),
                "{code}"
            );
        }
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"\xff");
        assert_eq!(fails(&frame(0x88, &payload)), 1007);
    }

    #[test]
    fn w3_nothing_is_read_after_close_or_error() {
        let mut data = frame(0x88, b"");
        data.extend(frame(0x81, b"later"));
        let mut decoder = Decoder::new(0, false);
        assert_eq!(
            decode_with(&mut decoder, &data),
            (vec![Event::Close(None, String::new())], None)
        );
        assert!(decoder.is_closed());
        decoder.feed(&frame(0x81, b"more"));
        assert_eq!(decoder.next_event(), Ok(None));
        let mut decoder = Decoder::new(0, false);
        decoder.feed(&[0x83]);
        let err = decoder.next_event().unwrap_err();
        decoder.feed(&frame(0x81, b"x"));
        assert_eq!(decoder.next_event(), Err(err));
        assert_eq!(err.code, 1002);
    }

    #[test]
    fn w3_ping_events_and_fed_one_byte_at_a_time() {
        let mut data = frame(0x89, b"are you there?");
        data.extend(frame(0x81, "héllo".as_bytes()));
        data.extend(frame(0x8a, b""));
        data.extend(frame(0x82, &[0; 300]));
        data.extend(frame(0x88, &1001u16.to_be_bytes()));
        let expected = vec![
            Event::Ping(b"are you there?".to_vec()),
            Event::Text("héllo".into()),
            Event::Pong(Vec::new()),
            Event::Binary(vec![0; 300]),
            Event::Close(Some(1001), String::new()),
        ];
        assert_eq!(decode(&data), (expected.clone(), None));
        let mut decoder = Decoder::new(0, false);
        assert_eq!(bytewise(&mut decoder, &data), (expected, None));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn w4_compressed_messages() {
        // RFC 7692 §7.2.3.2: "Hello" twice, the second referring to the first.
        let mut data = frame(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        data.extend(frame(0xc1, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
        let expected = vec![Event::Text("Hello".into()), Event::Text("Hello".into())];
        assert_eq!(
            decode_with(&mut Decoder::new(0, true), &data),
            (expected.clone(), None)
        );
        assert_eq!(
            bytewise(&mut Decoder::new(0, true), &data),
            (expected, None)
        );
        // Fragmented: RSV1 on the first frame only. An uncompressed message in between.
        let mut data = frame(0x41, &[0xf2, 0x48, 0xcd]);
        data.extend(frame(0x89, b"p"));
        data.extend(frame(0x80, &[0xc9, 0xc9, 0x07, 0x00]));
        data.extend(frame(0x82, b"raw"));
        assert_eq!(
            decode_with(&mut Decoder::new(0, true), &data).0,
            vec![
                Event::Ping(b"p".to_vec()),
                Event::Text("Hello".into()),
                Event::Binary(b"raw".to_vec())
            ]
        );
    }

    #[test]
    fn w4_compressed_message_limited_by_inflated_size() {
        let body = vec![b'z'; 50_000];
        let compressed = Deflater::new(15, false).compress(&body).unwrap();
        let wire = frame(0xc2, &compressed);
        let (events, err) = decode_with(&mut Decoder::new(50_000, true), &wire);
        assert_eq!((events, err), (vec![Event::Binary(body.clone())], None));
        let (_, err) = decode_with(&mut Decoder::new(49_999, true), &wire);
        assert_eq!(err.map(|r| r.code), Some(1009));
        let (_, err) = bytewise(&mut Decoder::new(1000, true), &wire);
        assert_eq!(err.map(|r| r.code), Some(1009));
    }

    #[test]
    fn w4_compressed_text_checked_and_corrupt_data_is_1007() {
        let mut deflater = Deflater::new(15, false);
        let bad = deflater.compress(b"good then \xff bad").unwrap();
        let (_, err) = decode_with(&mut Decoder::new(0, true), &frame(0xc1, &bad));
        assert_eq!(err.map(|r| r.code), Some(1007));
        let (_, err) = decode_with(
            &mut Decoder::new(0, true),
            &frame(0xc2, &[0xff, 0xff, 0xff]),
        );
        assert_eq!(err.map(|r| r.code), Some(1007));
        // An impossible byte inside the limit wins over the limit.
        let mut deflater = Deflater::new(15, false);
        let bad = deflater
            .compress(&[b"\xff".as_slice(), &[b'a'; 100]].concat())
            .unwrap();
        let (_, err) = decode_with(&mut Decoder::new(10, true), &frame(0xc1, &bad));
        assert_eq!(err.map(|r| r.code), Some(1007));
    }

    #[test]
    fn w4_client_no_context_takeover() {
        let params = DeflateParams {
            client_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut client = Deflater::new(15, true);
        let mut data = Vec::new();
        for _ in 0..3 {
            data.extend(frame(0xc1, &client.compress(b"again and again").unwrap()));
        }
        let (events, err) = decode_with(&mut Decoder::with_deflate(0, Some(&params)), &data);
        assert!(err.is_none());
        assert_eq!(events, vec![Event::Text("again and again".into()); 3]);
    }

    // --- encoding ---

    #[test]
    fn w3_server_frames() {
        // RFC 6455 §5.7: an unmasked "Hello", a fragmented one, and a ping.
        assert_eq!(
            text_frame("Hello"),
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            encode(Opcode::Text, b"Hel", false, false),
            [0x01, 0x03, 0x48, 0x65, 0x6c]
        );
        assert_eq!(
            encode(Opcode::Continuation, b"lo", true, false),
            [0x80, 0x02, 0x6c, 0x6f]
        );
        assert_eq!(
            ping_frame(b"Hello"),
            [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(pong_frame(b""), [0x8a, 0x00]);
        assert_eq!(ping_frame(&[1; 200]).len(), 2 + 125);
        assert_eq!(pong_frame(&[1; 200]).len(), 2 + 125);
        assert_eq!(encode(Opcode::Binary, b"", true, true), [0xc2, 0x00]);
        let mut out = vec![9];
        encode_into(&mut out, Opcode::Binary, b"ab", true, false);
        assert_eq!(out, [9, 0x82, 2, b'a', b'b']);
    }

    #[test]
    fn w3_close_frame_encoding() {
        assert_eq!(close_frame(None, "ignored"), [0x88, 0x00]);
        assert_eq!(close_frame(Some(1000), ""), [0x88, 0x02, 0x03, 0xe8]);
        assert_eq!(close_frame(Some(1005), "x"), [0x88, 0x00]);
        assert_eq!(close_frame(Some(999), "x"), [0x88, 0x00]);
        let frame = close_frame(Some(4000), &"é".repeat(100));
        // 123 bytes of reason would split a character: 122 are kept.
        assert_eq!(frame.len(), 2 + 2 + 122);
        assert_eq!(frame[1], 124);
        assert_eq!(
            TOO_BIG.frame(),
            [&[0x88, 17, 0x03, 0xf1][..], b"message too big"].concat()
        );
        assert_eq!(TOO_BIG.to_string(), "message too big (1009)");
    }

    #[test]
    fn w4_encoder_compresses_data_messages() {
        let params = DeflateParams::default();
        let mut encoder = Encoder::new(Some(&params));
        assert!(encoder.compresses());
        let long = "compress me ".repeat(50);
        let wire = encoder.text(&long);
        assert_eq!(wire[0], 0xc1);
        assert!(wire.len() < long.len());
        let wire2 = encoder.binary(long.as_bytes());
        assert_eq!(wire2[0], 0xc2);
        assert!(wire2.len() < wire.len());
        assert_eq!(encoder.message(Opcode::Ping, b"p"), ping_frame(b"p"));
        // The client's view: a server frame is unmasked, so decode it by hand.
        let mut inflater = Inflater::new(false);
        assert!(wire[1] < 126);
        let payload = &wire[2..];
        assert_eq!(inflate_all(&mut inflater, payload), long.as_bytes());
        let mut plain = Encoder::new(None);
        assert!(!plain.compresses());
        assert_eq!(plain.text("Hello"), text_frame("Hello"));
    }

    #[test]
    fn w3_opcodes() {
        for op in [
            Opcode::Continuation,
            Opcode::Text,
            Opcode::Binary,
            Opcode::Close,
            Opcode::Ping,
            Opcode::Pong,
        ] {
            assert_eq!(Opcode::from_bits(op as u8), Some(op));
            assert_eq!(op.is_control(), (op as u8) >= 8);
        }
        assert_eq!(Opcode::from_bits(0x81), Some(Opcode::Text));
        assert_eq!(Opcode::from_bits(3), None);
    }
}
