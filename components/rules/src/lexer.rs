//! Splits rule text into tokens. Positions are 0-based character offsets.

use crate::error::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A string literal, escapes already resolved.
    Str(String),
    Int(i64),
    Float(f64),
    /// An identifier or a keyword (`and`, `or`, `not`, `in`, `true`, ...);
    /// the parser tells them apart.
    Word(String),
    /// An operator or punctuation mark.
    Sym(&'static str),
    End,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Int(i) => format!("number {i}"),
            Tok::Float(f) => format!("number {f}"),
            Tok::Word(w) => format!("'{w}'"),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::End => "end of input".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// Longest first, so that `=~~` wins over `=~` and `**` over `*`.
const SYMBOLS: &[&str] = &[
    "=~~", "!~~", "==", "!=", "<=", ">=", "=~", "!~", "**", "//", "&.", "&[", "<", ">", "+", "-", "*", "/", "%", "(",
    ")", "[", "]", "{", "}", ",", ":", "?", ".",
];

pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            // Comment to the end of the line.
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let tok = if c == '\'' || c == '"' {
            let (s, next) = string(&chars, i)?;
            i = next;
            Tok::Str(s)
        } else if c.is_ascii_digit() {
            let (t, next) = number(&chars, i)?;
            i = next;
            t
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            Tok::Word(chars[start..i].iter().collect())
        } else if let Some(sym) =
            SYMBOLS.iter().find(|s| s.chars().enumerate().all(|(k, sc)| chars.get(i + k) == Some(&sc)))
        {
            i += sym.chars().count();
            Tok::Sym(sym)
        } else {
            let hint = match c {
                '=' => "; use '==' to compare",
                '&' | '|' | '^' | '~' => "; bitwise operators are not supported",
                _ => "",
            };
            return Err(ParseError::new(i, format!("unexpected character '{c}'{hint}")));
        };
        tokens.push(Token { tok, pos: start });
    }
    tokens.push(Token { tok: Tok::End, pos: chars.len() });
    Ok(tokens)
}

/// A quoted string starting at `start`; returns it and the index after the
/// closing quote. Unknown escapes are kept as written (`"\d"` stays a
/// backslash and a `d`), as Python does, so regex patterns read naturally.
fn string(chars: &[char], start: usize) -> Result<(String, usize), ParseError> {
    let quote = chars[start];
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(ParseError::new(start, "unterminated string"));
        };
        i += 1;
        if c == quote {
            return Ok((out, i));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = chars.get(i) else {
            return Err(ParseError::new(start, "unterminated string"));
        };
        i += 1;
        match e {
            '\\' | '\'' | '"' => out.push(e),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '0' => out.push('\0'),
            'u' => {
                let escape_at = i - 2;
                let high =
                    hex4(chars, i).ok_or_else(|| ParseError::new(escape_at, "\\u must be followed by 4 hex digits"))?;
                i += 4;
                let code = if (0xD800..0xDC00).contains(&high) {
                    // A surrogate pair: the low half must follow as \uXXXX.
                    let low = (chars.get(i) == Some(&'\\') && chars.get(i + 1) == Some(&'u'))
                        .then(|| hex4(chars, i + 2))
                        .flatten()
                        .filter(|low| (0xDC00..0xE000).contains(low))
                        .ok_or_else(|| ParseError::new(escape_at, "unpaired surrogate in \\u escape"))?;
                    i += 6;
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                out.push(
                    char::from_u32(code)
                        .ok_or_else(|| ParseError::new(escape_at, "unpaired surrogate in \\u escape"))?,
                );
            }
            _ => {
                out.push('\\');
                out.push(e);
            }
        }
    }
}

fn hex4(chars: &[char], at: usize) -> Option<u32> {
    let digits = chars.get(at..at + 4)?;
    digits.iter().try_fold(0u32, |acc, c| Some(acc * 16 + c.to_digit(16)?))
}

/// A number starting at `start` (a digit): decimal integer or float with
/// optional fraction and exponent, or `0x`/`0o`/`0b` integer.
fn number(chars: &[char], start: usize) -> Result<(Tok, usize), ParseError> {
    let mut i = start;
    let radix = match (chars[i], chars.get(i + 1).map(|c| c.to_ascii_lowercase())) {
        ('0', Some('x')) => 16,
        ('0', Some('o')) => 8,
        ('0', Some('b')) => 2,
        _ => 10,
    };
    if radix != 10 {
        i += 2;
        let digits_start = i;
        while i < chars.len() && (chars[i].is_digit(radix) || chars[i] == '_') {
            i += 1;
        }
        let digits: String = chars[digits_start..i].iter().filter(|c| **c != '_').collect();
        let value =
            i64::from_str_radix(&digits, radix).map_err(|_| ParseError::new(start, "invalid integer literal"))?;
        return finish_number(chars, start, Tok::Int(value), i);
    }
    while i < chars.len() && chars[i].is_ascii_digit() {
        i += 1;
    }
    let mut float = false;
    if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
        float = true;
        i += 1;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        if chars.get(j).is_some_and(char::is_ascii_digit) {
            float = true;
            i = j;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    let text: String = chars[start..i].iter().collect();
    let tok = match (float, text.parse::<i64>()) {
        (false, Ok(v)) => Tok::Int(v),
        _ => {
            let v: f64 = text.parse().map_err(|_| ParseError::new(start, "invalid number literal"))?;
            if !v.is_finite() {
                return Err(ParseError::new(start, "number literal out of range"));
            }
            Tok::Float(v)
        }
    };
    finish_number(chars, start, tok, i)
}

/// A number must not run straight into a letter (`12ab`).
fn finish_number(chars: &[char], start: usize, tok: Tok, end: usize) -> Result<(Tok, usize), ParseError> {
    match chars.get(end) {
        Some(c) if c.is_ascii_alphanumeric() || *c == '_' => Err(ParseError::new(start, "invalid number literal")),
        _ => Ok((tok, end)),
    }
}
