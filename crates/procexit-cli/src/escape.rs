//! Making untrusted text safe to print in a table.
//!
//! Any local user chooses their own process name and command line, and a
//! `.etl` file may come from anywhere. Printed raw, an escape sequence in
//! them would retitle or recolour the reader's terminal, a newline would
//! forge a row, and a bidi override would reorder what is shown. Like `ps`,
//! the table shows such characters escaped instead; JSON carries the exact
//! text (JSON's own escaping keeps it on one line).

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal as it is: C0 controls, DEL, C1
/// controls (U+0080–U+009F, which some terminals obey as escapes), the
/// Unicode line/paragraph separators, bidi and invisible format
/// characters (they reorder or hide what is shown), interlinear
/// annotation marks, and U+FFFD, which stands for bytes that were not
/// valid UTF-8 (or UTF-16) when the text was read.
fn must_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{061c}'                // Arabic letter mark
        | '\u{200b}'..='\u{200f}'   // zero-width space/joiners, LRM, RLM
        | '\u{2028}'..='\u{202e}'   // line/paragraph separators, LRE…RLO
        | '\u{2060}'..='\u{2069}'   // word joiner, invisible operators, LRI…PDI
        | '\u{feff}'                // zero-width no-break space (BOM)
        | '\u{fff9}'..='\u{fffb}'   // interlinear annotation
        | '\u{fffd}')
}

/// `text` with every character that could act on a terminal written as a
/// visible escape: `\n`, `\r`, `\t`, `\e` (ESC), `\a`, `\b`, `\v`, `\f`,
/// `\xHH` for other C0 controls and DEL, `\u{HHHH}` for the rest. With
/// `ascii_only`, every non-ASCII character is escaped as `\u{…}` too (for
/// output read in a legacy code page).
///
/// Backslashes are left alone: Windows paths are full of them, and the
/// table is for people (JSON is the exact form).
pub fn for_table(text: &str, ascii_only: bool) -> Cow<'_, str> {
    let needs = |c: char| must_escape(c) || (ascii_only && !c.is_ascii());
    let Some(first) = text.find(needs) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if !needs(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\u{0}'..='\u{1f}' | '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        let text = r#""C:\Windows\system32\cmd.exe" /c exit 3 — ok"#;
        assert!(matches!(for_table(text, false), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn terminal_escapes_become_visible() {
        let hostile = "sleep \u{1b}]0;pwned\u{7}\u{1b}[31mRED";
        assert_eq!(for_table(hostile, false), "sleep \\e]0;pwned\\a\\e[31mRED");
    }

    #[test]
    fn line_breaks_and_other_controls() {
        assert_eq!(for_table("a\nb\r\tc", false), "a\\nb\\r\\tc");
        assert_eq!(for_table("\u{0}\u{1}\u{7f}", false), "\\x00\\x01\\x7f");
        assert_eq!(for_table("\u{8}\u{b}\u{c}", false), "\\b\\v\\f");
    }

    #[test]
    fn c1_bidi_separators_and_replacement_characters() {
        // CSI as one C1 character, NEL, RLO … PDF, an isolate, LS.
        assert_eq!(
            for_table(
                "\u{9b}31m\u{85}\u{202e}txt.exe\u{202c}\u{2066}\u{2028}",
                false
            ),
            "\\u{9b}31m\\u{85}\\u{202e}txt.exe\\u{202c}\\u{2066}\\u{2028}"
        );
        assert_eq!(for_table("bad\u{fffd}byte", false), "bad\\u{fffd}byte");
        // Printable non-ASCII stays as it is.
        assert_eq!(for_table("café µs …", false), "café µs …");
    }

    #[test]
    fn ascii_only_escapes_everything_else() {
        assert_eq!(for_table("café\n", true), "caf\\u{e9}\\n");
        assert_eq!(for_table("plain", true), "plain");
    }
}
