//! gunicorn's access-log format and atoms: the parser on arbitrary text never panics, and on
//! formats built from random pieces (text with its `%` doubled, `%(name)s` atoms, names with
//! balanced parentheses) it gives back exactly those pieces; the quote escaping keeps every
//! byte; the Basic-auth user is UTF-8 without a `:`.
#![no_main]

use _native::core::access::{basic_user_into, parse, push_escaped, Atom, Piece};
use libfuzzer_sys::fuzz_target;

fn build(data: &[u8]) -> (String, Vec<Piece>) {
    let mut format = String::new();
    let mut pieces: Vec<Piece> = Vec::new();
    let mut text: Vec<u8> = Vec::new();
    for chunk in data.chunks(4) {
        let word: String = String::from_utf8_lossy(chunk.get(1..).unwrap_or_default())
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        if chunk.first().is_some_and(|b| b % 3 == 0) {
            // An atom; its name has no `%` (Python allows one, but it is not worth a case) and
            // its parentheses are balanced.
            let name: String = word.chars().filter(|&c| c != '(' && c != ')' && c != '%').collect();
            let name = if chunk.first().is_some_and(|b| b % 2 == 0) {
                format!("({name})")
            } else {
                name
            };
            format.push_str(&format!("%({name})s"));
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Atom(Atom::named(&name)));
        } else {
            format.push_str(&word.replace('%', "%%"));
            text.extend_from_slice(word.as_bytes());
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    (format, pieces)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse(&text);

    let (format, expected) = build(data);
    assert_eq!(parse(&format), Some(expected), "{format:?}");

    let mut escaped = Vec::new();
    push_escaped(&mut escaped, data);
    let quotes = data.iter().filter(|&&b| b == b'"').count();
    assert_eq!(escaped.len(), data.len() + quotes);

    let mut user = Vec::new();
    if basic_user_into(data, &mut user).is_some() {
        assert!(std::str::from_utf8(&user).is_ok());
        assert!(!user.contains(&b':'));
    }
});
