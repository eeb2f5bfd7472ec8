//! The WebSocket frame decoder (W3, W4) on arbitrary bytes and on generated conversations.
//!
//! Mode A feeds the input as a client stream: the decoder never panics, and the events and the
//! close code it fails with do not depend on how the stream was cut (whole, at random points,
//! byte by byte). Mode B reads the input as a script of messages (text, binary, ping, pong,
//! close; fragmented, interleaved, compressed or not, some frames broken on purpose), encodes
//! them as a client would and checks what the decoder says against a plain reading of the
//! rules, frame by frame. Compressed messages are stored deflate blocks of random content, or
//! come from pools compressed by the codec's own `Deflater` at start-up (zlib at three levels
//! and windows, with and without context takeover).
#![no_main]

use _native::core::websocket::{
    encode_raw, is_valid_close_code, Decoder, DeflateParams, Deflater, Event,
};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzz input as a stream of small numbers; zeros once it runs out.
struct Src<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Src<'a> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| n << 8 | u64::from(self.byte()))
    }

    fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

type Outcome = (Vec<Event>, Option<u16>);

fn new_decoder(max: usize, deflate: Option<&DeflateParams>) -> Decoder {
    Decoder::with_deflate(max, deflate)
}

/// Feeds `stream` cut at `cuts` (sorted offsets), draining the decoder after each piece.
fn run(decoder: &mut Decoder, stream: &[u8], cuts: &[usize]) -> Outcome {
    let mut events = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
        let end = end.clamp(start, stream.len());
        decoder.feed(&stream[start..end]);
        start = end;
        loop {
            match decoder.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(r) => {
                    // An error sticks.
                    assert_eq!(decoder.next_event(), Err(r));
                    return (events, Some(r.code));
                }
            }
        }
    }
    (events, None)
}

fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    let n = rng.below(12);
    let mut cuts: Vec<usize> = (0..n).map(|_| rng.below(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// Decodes whole, at random cuts and (when short) byte by byte; all three must agree.
fn decode_every_way(
    stream: &[u8],
    max: usize,
    deflate: Option<&DeflateParams>,
    rng: &mut Rng,
) -> Outcome {
    let whole = run(&mut new_decoder(max, deflate), stream, &[]);
    if stream.len() <= 512 && rng.next() & 1 == 0 {
        let every: Vec<usize> = (1..stream.len()).collect();
        let bytewise = run(&mut new_decoder(max, deflate), stream, &every);
        assert_eq!(whole, bytewise, "byte by byte");
    } else {
        let cuts = random_cuts(rng, stream.len());
        let split = run(&mut new_decoder(max, deflate), stream, &cuts);
        assert_eq!(whole, split, "cut at {cuts:?}");
    }
    whole
}

fn check_invariants(outcome: &Outcome, max: usize) {
    for event in &outcome.0 {
        match event {
            Event::Text(t) => assert!(max == 0 || t.len() <= max),
            Event::Binary(b) => assert!(max == 0 || b.len() <= max),
            Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= 125),
            Event::Close(code, reason) => {
                assert!(code.is_none_or(is_valid_close_code));
                assert!(reason.len() <= 123);
            }
        }
    }
    if let Some(code) = outcome.1 {
        assert!(matches!(code, 1002 | 1007 | 1009), "{code}");
    }
    // A close frame ends the stream.
    let closes = outcome
        .0
        .iter()
        .filter(|e| matches!(e, Event::Close(..)))
        .count();
    assert!(closes <= 1);
    if closes == 1 {
        assert!(matches!(outcome.0.last(), Some(Event::Close(..))));
        assert!(outcome.1.is_none());
    }
}

fn params_from(bits: u8, src: &mut Src) -> (usize, Option<DeflateParams>) {
    let max = match bits & 3 {
        0 => 0,
        1 => usize::from(src.byte()),
        2 => 1000,
        _ => 70_000,
    };
    let deflate = (bits & 4 != 0).then(|| DeflateParams {
        client_no_context_takeover: bits & 8 != 0,
        client_max_window_bits: 9 + (bits >> 4) % 7,
        ..DeflateParams::default()
    });
    (max, deflate)
}

/// Mode A: arbitrary bytes.
fn arbitrary_stream(src: &mut Src) {
    let bits = src.byte();
    let (max, deflate) = params_from(bits, src);
    let mut rng = Rng(src.u64());
    let stream = src.rest();
    let outcome = decode_every_way(stream, max, deflate.as_ref(), &mut rng);
    check_invariants(&outcome, max);
}

/// One frame as the script builds it.
struct Frame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: Vec<u8>,
    mask: Option<[u8; 4]>,
    /// On the last frame of a compressed message: what it inflates to.
    content: Option<Vec<u8>>,
}

impl Frame {
    fn new(opcode: u8, fin: bool, payload: Vec<u8>, mask: [u8; 4]) -> Self {
        Self {
            fin,
            rsv: 0,
            opcode,
            payload,
            mask: Some(mask),
            content: None,
        }
    }

    fn wire(&self) -> Vec<u8> {
        let first = if self.fin { 0x80 } else { 0 } | self.rsv | self.opcode;
        encode_raw(first, &self.payload, self.mask)
    }
}

/// An error found on the sender's side: the impossible byte of a text message shows before the
/// message ends.
fn impossible(data: &[u8]) -> bool {
    matches!(std::str::from_utf8(data), Err(e) if e.error_len().is_some())
}

const CHARS: &[&str] = &[
    "a",
    "Z",
    " ",
    "é",
    "ß",
    "€",
    "中",
    "𝄞",
    "😀",
    "\u{7f}",
    "\u{10ffff}",
];

const CODES: &[u16] = &[
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999, 0, 999,
    1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535,
];

/// Message content: `len` bytes of random data, or valid UTF-8 of about that many bytes. Past
/// 256 bytes the first 256 repeat.
fn content(rng: &mut Rng, len: usize, utf8: bool) -> Vec<u8> {
    let unit = len.min(256);
    let mut out = if utf8 {
        let mut s = String::new();
        while s.len() < unit {
            s.push_str(CHARS[rng.below(CHARS.len())]);
        }
        s.into_bytes()
    } else {
        (0..unit).map(|_| rng.next() as u8).collect()
    };
    let pattern = out.clone();
    while out.len() < len {
        out.extend_from_slice(&pattern);
    }
    out
}

/// Cuts `payload` into `n` fragments (some possibly empty).
fn fragments(rng: &mut Rng, payload: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = (1..n).map(|_| rng.below(payload.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for end in cuts.into_iter().chain(std::iter::once(payload.len())) {
        out.push(payload[start..end].to_vec());
        start = end;
    }
    out
}

/// The rules of RFC 6455 §5 and RFC 7692 read plainly, frame by frame (W3, W4).
fn model(frames: &[Frame], deflate: bool, max: usize) -> Outcome {
    let limit = if max == 0 { usize::MAX } else { max };
    let mut events = Vec::new();
    // (text, compressed, bytes so far)
    let mut message: Option<(bool, bool, Vec<u8>)> = None;
    macro_rules! fail {
        ($code:expr) => {
            return (events, Some($code))
        };
    }
    for f in frames {
        let control = f.opcode >= 8;
        let rsv1 = f.rsv & 0x40 != 0;
        let len = f.payload.len();
        if f.rsv & 0x30 != 0 {
            fail!(1002);
        }
        if control && (rsv1 || !f.fin) {
            fail!(1002);
        }
        if f.opcode == 0 && (message.is_none() || rsv1) {
            fail!(1002);
        }
        if matches!(f.opcode, 1 | 2) && (message.is_some() || (rsv1 && !deflate)) {
            fail!(1002);
        }
        if f.mask.is_none() {
            fail!(1002);
        }
        if control && (len > 125 || (f.opcode == 8 && len == 1)) {
            fail!(1002);
        }
        if matches!(f.opcode, 1 | 2) {
            message = Some((f.opcode == 1, rsv1, Vec::new()));
        }
        match f.opcode {
            9 => events.push(Event::Ping(f.payload.clone())),
            10 => events.push(Event::Pong(f.payload.clone())),
            8 => match f.payload.as_slice() {
                [] => {
                    events.push(Event::Close(None, String::new()));
                    return (events, None);
                }
                [hi, lo, reason @ ..] => {
                    let code = u16::from_be_bytes([*hi, *lo]);
                    if !is_valid_close_code(code) {
                        fail!(1002);
                    }
                    let Ok(reason) = std::str::from_utf8(reason) else {
                        fail!(1007);
                    };
                    events.push(Event::Close(Some(code), reason.to_owned()));
                    return (events, None);
                }
                [_] => unreachable!(),
            },
            _ => {
                let Some((text, compressed, data)) = message.as_mut() else {
                    unreachable!()
                };
                let (text, compressed) = (*text, *compressed);
                if !compressed {
                    if data.len() + len > limit {
                        fail!(1009);
                    }
                    data.extend_from_slice(&f.payload);
                    if text && !f.fin && impossible(data) {
                        fail!(1007);
                    }
                }
                if f.fin {
                    let data = if compressed {
                        f.content.clone().unwrap_or_default()
                    } else {
                        std::mem::take(data)
                    };
                    if data.len() > limit {
                        // The bytes up to the limit are checked before the size fails.
                        fail!(if text && impossible(&data[..limit]) {
                            1007
                        } else {
                            1009
                        });
                    }
                    if text {
                        match String::from_utf8(data) {
                            Ok(t) => events.push(Event::Text(t)),
                            Err(_) => fail!(1007),
                        }
                    } else {
                        events.push(Event::Binary(data));
                    }
                    message = None;
                }
            }
        }
    }
    (events, None)
}

/// Messages compressed in order by one zlib deflater: (content, compressed payload).
struct Pool {
    no_context_takeover: bool,
    messages: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The pool messages' contents: empty ones after others (zlib writes nothing for them), short
/// and long text that refers back to earlier messages, random bytes, and text that is not UTF-8
/// (an impossible byte, or a sequence cut at the end).
fn pool_contents(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for i in 0..16 {
        let len = rng.below(200);
        let message = match i % 8 {
            0 => Vec::new(),
            1 | 6 => content(rng, len, true),
            2 => (0..len).map(|_| rng.next() as u8).collect(),
            3 => "repeat after me, "
                .repeat(100 + rng.below(600))
                .into_bytes(),
            4 => {
                let mut m = content(rng, len, true);
                let at = rng.below(m.len() + 1);
                m.insert(at, 0xff);
                m
            }
            5 => [content(rng, len, true), vec![0xf0, 0x9f]].concat(),
            _ => out.get(i - 6).cloned().unwrap_or_default(),
        };
        out.push(message);
    }
    out
}

/// zlib's deflate is slow under the fuzzer's instrumentation and would draw the search into
/// zlib's own branches, so its output is made once, at start-up: one pool per level, window
/// and context takeover. Its contents vary less than those of the stored-block client.
fn build_pools() -> Vec<Pool> {
    let mut pools = Vec::new();
    let mut rng = Rng(7);
    for level in [1, 6, 9] {
        for bits in [9, 12, 15] {
            for no_context_takeover in [false, true] {
                let mut deflater = Deflater::with_level(bits, no_context_takeover, level);
                let messages = pool_contents(&mut rng)
                    .into_iter()
                    .map(|m| {
                        let z = deflater.compress(&m).unwrap_or_default();
                        (m, z)
                    })
                    .collect();
                pools.push(Pool {
                    no_context_takeover,
                    messages,
                });
            }
        }
    }
    pools
}

thread_local! {
    static POOLS: Vec<Pool> = build_pools();
}

/// How the scripted client compresses.
enum Client {
    /// The next unused message of a zlib pool.
    Pool(usize, usize),
    /// Stored (uncompressed) deflate blocks of random content: valid for any window.
    Stored,
}

/// A message as stored deflate blocks of random sizes, without the `00 00 ff ff` tail: the
/// last byte is the header of the empty block the receiver's tail completes.
fn stored_blocks(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut rest = data;
    while !rest.is_empty() {
        let n = (1 + rng.below(rest.len())).min(65535);
        let (block, tail) = rest.split_at(n);
        out.push(0x00);
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend_from_slice(&(!(n as u16)).to_le_bytes());
        out.extend_from_slice(block);
        rest = tail;
    }
    out.push(0x00);
    out
}

/// Mode B: a generated conversation against the model.
fn conversation(src: &mut Src) {
    let bits = src.byte();
    let (max, deflate) = params_from(bits, src);
    let mut rng = Rng(src.u64());
    // The client sends a zlib pool's messages in order, or stored blocks.
    let choice = src.byte();
    let mut client = deflate.as_ref().map(|p| {
        if choice < 128 {
            return Client::Stored;
        }
        let pools = POOLS.with(Vec::len);
        let matching: Vec<usize> = (0..pools)
            .filter(|&i| {
                POOLS.with(|all| all[i].no_context_takeover) == p.client_no_context_takeover
            })
            .collect();
        Client::Pool(matching[usize::from(choice) % matching.len()], 0)
    });
    let mut frames: Vec<Frame> = Vec::new();
    let mut budget: usize = 100_000;
    let mut count = 0;
    while !src.done() && count < 12 {
        count += 1;
        let op = src.byte();
        let size = src.byte();
        let shape = src.byte();
        let mask = [src.byte(), src.byte(), src.byte(), src.byte()];
        let mask = if mask == [0; 4] { [1, 2, 3, 4] } else { mask };
        // Some messages take 16-bit and 64-bit lengths; compressed ones stay small.
        let compress = client.is_some() && op & 0x20 != 0 && op % 8 < 4;
        let mut len = usize::from(size);
        match op & 0x18 {
            0x18 if !compress && size > 0xe0 => len *= 300,
            0x10 | 0x18 if !compress => len *= 4,
            _ => {}
        }
        len = len.min(budget);
        budget -= len;
        match op % 8 {
            kind @ 0..=3 => {
                let text = kind < 2;
                let mut body = content(&mut rng, len, text && op & 0x40 == 0);
                let mut compress = compress;
                let wire_payload = match (&mut client, compress) {
                    (Some(Client::Pool(pool, next)), true) => {
                        let message = POOLS.with(|all| all[*pool].messages.get(*next).cloned());
                        *next += 1;
                        match message {
                            Some((content, compressed)) => {
                                body = content;
                                compressed
                            }
                            None => {
                                compress = false;
                                body.clone()
                            }
                        }
                    }
                    (Some(Client::Stored), true) => stored_blocks(&mut rng, &body),
                    _ => body.clone(),
                };
                let pieces = fragments(&mut rng, &wire_payload, 1 + usize::from(shape % 4));
                let clean = (!text || std::str::from_utf8(&body).is_ok())
                    && (max == 0 || body.len() <= max);
                // A compressed message whose content fails may fail at any of its frames:
                // leave its frames alone so that the model knows where it ends.
                let may_break = !compress || clean;
                let first_index = frames.len();
                let n = pieces.len();
                for (i, piece) in pieces.into_iter().enumerate() {
                    let opcode = if i == 0 {
                        if text {
                            1
                        } else {
                            2
                        }
                    } else {
                        0
                    };
                    let mut f = Frame::new(opcode, i + 1 == n, piece, mask);
                    if i == 0 && compress {
                        f.rsv = 0x40;
                    }
                    if i + 1 == n && compress {
                        f.content = Some(body.clone());
                    }
                    frames.push(f);
                    if i + 1 < n && may_break && shape & 0x30 == 0x10 {
                        let ping_len = rng.below(8);
                        let ping = content(&mut rng, ping_len, false);
                        frames.push(Frame::new(9, true, ping, mask));
                    }
                }
                if may_break {
                    let target = first_index + usize::from(shape >> 6) % n.max(1);
                    let last = frames.len() - 1;
                    let f = &mut frames[target.min(last)];
                    let first_data = matches!(f.opcode, 1 | 2);
                    // Each change either breaks a rule or (fin, opcode) changes the framing of
                    // uncompressed data only, which the model follows.
                    match (shape >> 2) % 16 {
                        1 => f.mask = None,
                        // RSV1 on a continuation, or without deflate.
                        2 if !first_data || client.is_none() => f.rsv |= 0x40,
                        3 => f.rsv |= 0x20,
                        4 => f.rsv |= 0x10,
                        5 if !compress || f.opcode >= 8 => f.fin = !f.fin,
                        6 if first_data => f.opcode = 0,
                        _ => {}
                    }
                }
            }
            4 | 5 => {
                let payload = content(&mut rng, len % 130, false);
                let mut f = Frame::new(if op % 8 == 4 { 9 } else { 10 }, true, payload, mask);
                match shape % 8 {
                    1 => f.fin = false,
                    2 => f.mask = None,
                    3 => f.rsv = 0x40,
                    _ => {}
                }
                frames.push(f);
            }
            _ => {
                let payload = match shape % 4 {
                    0 => Vec::new(),
                    1 => vec![shape],
                    _ => {
                        let code = CODES[usize::from(size) % CODES.len()];
                        let reason = content(&mut rng, len % 128, op & 0x40 == 0);
                        [&code.to_be_bytes()[..], &reason].concat()
                    }
                };
                frames.push(Frame::new(8, true, payload, mask));
            }
        }
    }
    let mut stream = Vec::new();
    for f in &frames {
        stream.extend_from_slice(&f.wire());
    }
    let outcome = decode_every_way(&stream, max, deflate.as_ref(), &mut rng);
    check_invariants(&outcome, max);
    if std::env::var_os("WS_DEBUG").is_some() {
        eprintln!("max {max} deflate {deflate:?}");
        for f in &frames {
            eprintln!(
                "op {} fin {} rsv {:#x} masked {} len {} content {:?} payload {:?}",
                f.opcode,
                f.fin,
                f.rsv,
                f.mask.is_some(),
                f.payload.len(),
                f.content.as_ref().map(Vec::len),
                &f.payload[..f.payload.len().min(12)]
            );
        }
    }
    let expected = model(&frames, deflate.is_some(), max);
    assert_eq!(outcome, expected);
}

fuzz_target!(|data: &[u8]| {
    let mut src = Src { data, pos: 0 };
    if src.byte() & 1 == 0 {
        arbitrary_stream(&mut src);
    } else {
        conversation(&mut src);
    }
});
