//! Readline for the pty: keystrokes in, terminal echo and finished lines
//! out, as bash's readline would answer them (emacs mode).
//!
//! Pure state: the caller feeds bytes one at a time and writes the echo
//! to the client; the shell is reached only through [`Context`] (prompt,
//! history, completion candidates). Everything is bounded: the line by
//! `max_line` bytes, an escape sequence by [`MAX_ESCAPE`] bytes, history
//! navigation by the history the shell keeps, a completion listing by
//! [`MAX_LISTED`] names.

use super::{commands, fs, Shell};

/// Longest escape sequence kept before it is dropped as garbage.
pub const MAX_ESCAPE: usize = 16;
/// Most names a completion listing shows (bash asks first past 100).
const QUERY_ITEMS: usize = 100;
const MAX_LISTED: usize = 2_000;
/// The terminal width listings are laid out for.
const COLUMNS: usize = 80;

/// What the editor needs from the shell it edits for.
pub trait Context {
    fn prompt(&self) -> String;
    /// Past lines, oldest first.
    fn history(&self) -> &[String];
    /// Full replacements for `word`: command names when `command` is
    /// true and the word has no `/`, paths otherwise (directories end
    /// with `/`). Sorted, without duplicates.
    fn candidates(&self, word: &str, command: bool) -> Vec<String>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Enter: the line to run (its `\r\n` is already in the echo).
    Line(String),
    /// Ctrl-D on an empty line: the user logs out.
    Eof,
    /// The line outgrew `max_line`; the caller ends the session.
    TooLong,
}

/// What one byte gives: bytes for the terminal, then maybe an action.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub echo: Vec<u8>,
    pub action: Option<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// After ESC [ (parameters collected in `esc_params`).
    Csi,
    /// After ESC O.
    Ss3,
}

pub struct LineEditor {
    buf: Vec<char>,
    cursor: usize,
    max_line: usize,
    escape: Escape,
    esc_params: Vec<u8>,
    utf8: Vec<u8>,
    last_cr: bool,
    /// Index into the history while browsing it, and the line being typed
    /// before browsing started.
    history_pos: Option<usize>,
    saved: Vec<char>,
    last_was_tab: bool,
    /// Candidates waiting for the answer to "Display all N possibilities?".
    query: Option<Vec<String>>,
}

fn back(n: usize) -> String {
    "\x08".repeat(n)
}

fn text(chars: &[char]) -> String {
    chars.iter().collect()
}

fn is_word_break(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '|' | '&' | '<' | '>' | '(' | ')')
}

impl LineEditor {
    pub fn new(max_line: usize) -> LineEditor {
        LineEditor {
            buf: Vec::new(),
            cursor: 0,
            max_line,
            escape: Escape::None,
            esc_params: Vec::new(),
            utf8: Vec::new(),
            last_cr: false,
            history_pos: None,
            saved: Vec::new(),
            last_was_tab: false,
            query: None,
        }
    }

    /// The line as typed so far.
    pub fn line(&self) -> String {
        text(&self.buf)
    }

    /// Take what is typed (piped input that ended without a newline).
    pub fn take_line(&mut self) -> String {
        self.cursor = 0;
        text(&std::mem::take(&mut self.buf))
    }

    fn byte_len(chars: &[char]) -> usize {
        chars.iter().map(|c| c.len_utf8()).sum()
    }

    /// Replace the line and cursor, echoing the least that makes the
    /// screen match: back to the first difference, the new tail, blanks
    /// over what got shorter, back to the new cursor.
    fn replace(&mut self, new: Vec<char>, new_cursor: usize, out: &mut String) {
        let common = self.buf.iter().zip(&new).take_while(|(a, b)| a == b).count();
        if new == self.buf {
            self.move_to(new_cursor, out);
            return;
        }
        let mut at = self.cursor;
        if common < at {
            out.push_str(&back(at - common));
        } else {
            out.extend(&new[at..common]);
        }
        at = common;
        out.extend(&new[at..]);
        at = new.len();
        if self.buf.len() > new.len() {
            let blanks = self.buf.len() - new.len();
            out.push_str(&" ".repeat(blanks));
            at += blanks;
        }
        out.push_str(&back(at - new_cursor));
        self.buf = new;
        self.cursor = new_cursor;
    }

    fn move_to(&mut self, to: usize, out: &mut String) {
        if to < self.cursor {
            out.push_str(&back(self.cursor - to));
        } else {
            out.extend(&self.buf[self.cursor..to]);
        }
        self.cursor = to;
    }

    /// The prompt and line drawn afresh, cursor where it was.
    fn redraw(&self, ctx: &dyn Context, out: &mut String) {
        out.push_str(&ctx.prompt());
        out.extend(&self.buf);
        out.push_str(&back(self.buf.len() - self.cursor));
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.cursor = 0;
        self.history_pos = None;
        self.saved.clear();
    }

    /// Feed one byte from the terminal.
    pub fn feed(&mut self, byte: u8, ctx: &dyn Context) -> Step {
        let mut out = String::new();
        let action = self.key(byte, ctx, &mut out);
        Step { echo: out.into_bytes(), action }
    }

    fn key(&mut self, byte: u8, ctx: &dyn Context, out: &mut String) -> Option<Action> {
        let cr = std::mem::replace(&mut self.last_cr, false);
        if let Some(candidates) = self.query.take() {
            self.last_was_tab = false;
            match byte {
                b'y' | b'Y' | b' ' => {
                    out.push_str("\r\n");
                    out.push_str(&columns(&candidates));
                    self.redraw(ctx, out);
                }
                b'n' | b'N' | 0x7f | 0x03 => {
                    out.push_str("\r\n");
                    self.redraw(ctx, out);
                }
                _ => {
                    out.push('\x07');
                    self.query = Some(candidates);
                }
            }
            return None;
        }
        let tab = byte == b'\t' && self.escape == Escape::None;
        let was_tab = std::mem::replace(&mut self.last_was_tab, tab);
        match self.escape {
            Escape::Start => {
                self.escape = match byte {
                    b'[' => Escape::Csi,
                    b'O' => Escape::Ss3,
                    // A Meta key or a lone ESC: readline's meta bindings
                    // are not kept; the pair is swallowed.
                    _ => Escape::None,
                };
                self.esc_params.clear();
                return None;
            }
            Escape::Ss3 => {
                self.escape = Escape::None;
                self.csi(byte, ctx, out);
                return None;
            }
            Escape::Csi => {
                match byte {
                    0x20..=0x3f if self.esc_params.len() < MAX_ESCAPE => self.esc_params.push(byte),
                    0x40..=0x7e => {
                        self.escape = Escape::None;
                        self.csi(byte, ctx, out);
                    }
                    // Overlong or malformed: dropped whole.
                    _ => self.escape = Escape::None,
                }
                return None;
            }
            Escape::None => {}
        }
        if byte < 0x80 && !self.utf8.is_empty() {
            self.utf8.clear();
        }
        match byte {
            b'\n' if cr => None,
            b'\r' | b'\n' => {
                self.last_cr = byte == b'\r';
                self.move_to(self.buf.len(), out);
                out.push_str("\r\n");
                let line = text(&self.buf);
                self.reset();
                Some(Action::Line(line))
            }
            0x1b => {
                self.escape = Escape::Start;
                None
            }
            0x7f | 0x08 => {
                if self.cursor > 0 {
                    let mut new = self.buf.clone();
                    new.remove(self.cursor - 1);
                    self.replace(new, self.cursor - 1, out);
                }
                None
            }
            0x03 => {
                out.push_str("^C\r\n");
                self.reset();
                out.push_str(&ctx.prompt());
                None
            }
            0x04 if self.buf.is_empty() => Some(Action::Eof),
            0x04 => {
                self.delete_at_cursor(out);
                None
            }
            0x01 => {
                self.move_to(0, out);
                None
            }
            0x05 => {
                self.move_to(self.buf.len(), out);
                None
            }
            0x02 => {
                self.move_to(self.cursor.saturating_sub(1), out);
                None
            }
            0x06 => {
                self.move_to((self.cursor + 1).min(self.buf.len()), out);
                None
            }
            0x10 => {
                self.history_up(ctx, out);
                None
            }
            0x0e => {
                self.history_down(ctx, out);
                None
            }
            0x15 => {
                let new = self.buf[self.cursor..].to_vec();
                self.replace(new, 0, out);
                None
            }
            0x0b => {
                let new = self.buf[..self.cursor].to_vec();
                self.replace(new, self.cursor, out);
                None
            }
            0x17 => {
                let mut start = self.cursor;
                while start > 0 && self.buf[start - 1].is_whitespace() {
                    start -= 1;
                }
                while start > 0 && !self.buf[start - 1].is_whitespace() {
                    start -= 1;
                }
                let mut new = self.buf[..start].to_vec();
                new.extend(&self.buf[self.cursor..]);
                self.replace(new, start, out);
                None
            }
            0x0c => {
                out.push_str("\x1b[H\x1b[2J");
                self.redraw(ctx, out);
                None
            }
            b'\t' => self.complete(was_tab, ctx, out),
            0x20..=0x7e => self.insert(&[byte as char], out),
            0x80..=0xff => {
                self.utf8.push(byte);
                match std::str::from_utf8(&self.utf8) {
                    Ok(s) => {
                        let c: Vec<char> = s.chars().collect();
                        self.utf8.clear();
                        self.insert(&c, out)
                    }
                    Err(e) if e.error_len().is_some() || self.utf8.len() >= 4 => {
                        self.utf8.clear();
                        None
                    }
                    Err(_) => None,
                }
            }
            // Other control keys have no binding here; readline rings
            // nothing for most of them either.
            _ => None,
        }
    }

    fn insert(&mut self, chars: &[char], out: &mut String) -> Option<Action> {
        if Self::byte_len(&self.buf) + Self::byte_len(chars) > self.max_line {
            return Some(Action::TooLong);
        }
        let mut new = self.buf.clone();
        new.splice(self.cursor..self.cursor, chars.iter().copied());
        self.replace(new, self.cursor + chars.len(), out);
        None
    }

    fn delete_at_cursor(&mut self, out: &mut String) {
        if self.cursor < self.buf.len() {
            let mut new = self.buf.clone();
            new.remove(self.cursor);
            self.replace(new, self.cursor, out);
        }
    }

    /// A finished CSI (or SS3) sequence with final byte `last`.
    fn csi(&mut self, last: u8, ctx: &dyn Context, out: &mut String) {
        let params = std::mem::take(&mut self.esc_params);
        match (last, params.as_slice()) {
            (b'A', _) => self.history_up(ctx, out),
            (b'B', _) => self.history_down(ctx, out),
            (b'C', _) => self.move_to((self.cursor + 1).min(self.buf.len()), out),
            (b'D', _) => self.move_to(self.cursor.saturating_sub(1), out),
            (b'H', _) | (b'~', b"1") | (b'~', b"7") => self.move_to(0, out),
            (b'F', _) | (b'~', b"4") | (b'~', b"8") => self.move_to(self.buf.len(), out),
            (b'~', b"3") => self.delete_at_cursor(out),
            _ => {}
        }
    }

    fn show_history(&mut self, line: Vec<char>, out: &mut String) {
        let mut line = line;
        while Self::byte_len(&line) > self.max_line {
            line.pop();
        }
        let end = line.len();
        self.replace(line, end, out);
    }

    fn history_up(&mut self, ctx: &dyn Context, out: &mut String) {
        let history = ctx.history();
        let pos = match self.history_pos {
            None if history.is_empty() => return,
            None => {
                self.saved = self.buf.clone();
                history.len() - 1
            }
            Some(0) => return,
            Some(p) => p.min(history.len()) - 1,
        };
        self.history_pos = Some(pos);
        self.show_history(history[pos].chars().collect(), out);
    }

    fn history_down(&mut self, ctx: &dyn Context, out: &mut String) {
        let history = ctx.history();
        let Some(pos) = self.history_pos else { return };
        if pos + 1 < history.len() {
            self.history_pos = Some(pos + 1);
            self.show_history(history[pos + 1].chars().collect(), out);
        } else {
            self.history_pos = None;
            let saved = std::mem::take(&mut self.saved);
            self.show_history(saved, out);
        }
    }

    /// Tab: complete the word before the cursor as readline does.
    fn complete(&mut self, again: bool, ctx: &dyn Context, out: &mut String) -> Option<Action> {
        let mut start = self.cursor;
        while start > 0 && !is_word_break(self.buf[start - 1]) {
            start -= 1;
        }
        let before = text(&self.buf[..start]);
        let before = before.trim_end();
        let command = before.is_empty() || before.ends_with([';', '|', '&', '(']);
        let word = text(&self.buf[start..self.cursor]);
        let candidates = ctx.candidates(&word, command);
        match candidates.as_slice() {
            [] => out.push('\x07'),
            [only] => {
                let mut rest: Vec<char> = only.chars().skip(word.chars().count()).collect();
                if !only.ends_with('/') {
                    rest.push(' ');
                }
                return self.insert(&rest, out);
            }
            many => {
                let common = common_prefix(many);
                if common.chars().count() > word.chars().count() {
                    // Readline lists on a second Tab only when the first
                    // one left the line as it was.
                    self.last_was_tab = false;
                    let rest: Vec<char> = common.chars().skip(word.chars().count()).collect();
                    return self.insert(&rest, out);
                }
                if !again {
                    out.push('\x07');
                } else if many.len() >= QUERY_ITEMS {
                    out.push_str(&format!("\r\nDisplay all {} possibilities? (y or n)", many.len()));
                    self.query = Some(many.iter().take(MAX_LISTED).cloned().collect());
                } else {
                    out.push_str("\r\n");
                    out.push_str(&columns(many));
                    self.redraw(ctx, out);
                }
            }
        }
        None
    }
}

fn common_prefix(words: &[String]) -> String {
    let mut prefix: Vec<char> = words[0].chars().collect();
    for w in &words[1..] {
        let same = prefix.iter().zip(w.chars()).take_while(|(a, b)| **a == *b).count();
        prefix.truncate(same);
    }
    text(&prefix)
}

/// What a listing shows for a candidate: its last component (a
/// directory keeps its `/`).
fn display(candidate: &str) -> String {
    match candidate.strip_suffix('/') {
        Some(dir) => format!("{}/", fs::basename(dir)),
        None => fs::basename(candidate).to_string(),
    }
}

/// Candidates in columns, sorted down each column as bash lays them out,
/// each row ending in `\r\n`.
fn columns(candidates: &[String]) -> String {
    let names: Vec<String> = candidates.iter().map(|c| display(c)).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) + 2;
    let cols = (COLUMNS / width).max(1);
    let rows = names.len().div_ceil(cols);
    let mut out = String::new();
    for row in 0..rows {
        let mut line = String::new();
        for col in 0..cols {
            if let Some(name) = names.get(col * rows + row) {
                line.push_str(&format!("{name:<width$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push_str("\r\n");
    }
    out
}

impl Context for Shell {
    fn prompt(&self) -> String {
        Shell::prompt(self)
    }

    fn history(&self) -> &[String] {
        &self.history
    }

    fn candidates(&self, word: &str, command: bool) -> Vec<String> {
        let mut found: Vec<String> = if command && !word.contains('/') {
            let programs = commands::REGISTRY
                .iter()
                .filter(|e| e.kind == commands::Kind::Builtin || commands::available(&self.persona, e.name))
                .map(|e| e.name.to_string());
            programs
                .chain(self.aliases.keys().cloned())
                .chain(self.functions.keys().cloned())
                .filter(|n| n.starts_with(word))
                .collect()
        } else {
            let (typed_dir, prefix) = match word.rfind('/') {
                Some(i) => (&word[..=i], &word[i + 1..]),
                None => ("", word),
            };
            let lookup_dir = match typed_dir.strip_prefix('~') {
                Some(rest) => format!("{}{rest}", self.home()),
                None if typed_dir.is_empty() => ".".to_string(),
                None => typed_dir.to_string(),
            };
            let dir = fs::normalize(&self.cwd, &lookup_dir);
            let names = self.fs.list(&dir).unwrap_or_default();
            names
                .into_iter()
                .filter(|n| n.starts_with(prefix) && (prefix.starts_with('.') || !n.starts_with('.')))
                .map(|n| {
                    let full = fs::normalize(&dir, &n);
                    let slash = if self.fs.stat(&full).is_some_and(|node| node.is_dir()) { "/" } else { "" };
                    format!("{typed_dir}{n}{slash}")
                })
                .collect()
        };
        found.sort();
        found.dedup();
        found.truncate(MAX_LISTED);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Fake {
        history: Vec<String>,
        words: Vec<String>,
    }

    impl Context for Fake {
        fn prompt(&self) -> String {
            "$ ".into()
        }
        fn history(&self) -> &[String] {
            &self.history
        }
        fn candidates(&self, word: &str, _command: bool) -> Vec<String> {
            self.words.iter().filter(|w| w.starts_with(word)).cloned().collect()
        }
    }

    fn fake() -> Fake {
        Fake { history: vec!["ls -la".into(), "id".into()], words: vec![] }
    }

    /// Feed `input`; the echo of all of it and the actions in order.
    fn type_in(ed: &mut LineEditor, ctx: &dyn Context, input: &[u8]) -> (String, Vec<Action>) {
        let mut echo = Vec::new();
        let mut actions = Vec::new();
        for &b in input {
            let step = ed.feed(b, ctx);
            echo.extend(step.echo);
            actions.extend(step.action);
        }
        (String::from_utf8(echo).unwrap(), actions)
    }

    fn line(s: &str) -> Vec<Action> {
        vec![Action::Line(s.into())]
    }

    #[test]
    fn printable_input_is_echoed_and_enter_gives_the_line() {
        let mut ed = LineEditor::new(100);
        let (echo, actions) = type_in(&mut ed, &fake(), b"id\r\n");
        assert_eq!(echo, "id\r\n");
        assert_eq!(actions, line("id"), "the LF after CR is not a second line");
        let (_, actions) = type_in(&mut ed, &fake(), b"\n");
        assert_eq!(actions, line(""), "a lone LF is Enter");
    }

    #[test]
    fn utf8_input_is_one_character() {
        let mut ed = LineEditor::new(100);
        let (echo, actions) = type_in(&mut ed, &fake(), "é\x08\x7fü\r".as_bytes());
        assert_eq!(echo, "é\x08 \x08ü\r\n");
        assert_eq!(actions, line("ü"));
        let (echo, actions) = type_in(&mut ed, &fake(), b"\xff\xc3a\r");
        assert_eq!((echo.as_str(), actions), ("a\r\n", line("a")), "invalid bytes are dropped");
    }

    #[test]
    fn backspace_del_and_ctrl_h_erase_at_the_end_and_mid_line() {
        let mut ed = LineEditor::new(100);
        let (echo, _) = type_in(&mut ed, &fake(), b"abc\x7f");
        assert_eq!(echo, "abc\x08 \x08");
        let (echo, _) = type_in(&mut ed, &fake(), b"\x08");
        assert_eq!(echo, "\x08 \x08", "Ctrl-H is backspace");
        // "a" left; type "xyz", go left twice, erase "x".
        let (echo, actions) = type_in(&mut ed, &fake(), b"xyz\x1b[D\x1b[D\x7f\r");
        assert_eq!(echo, "xyz\x08\x08\x08yz \x08\x08\x08yz\r\n");
        assert_eq!(actions, line("ayz"));
        let (echo, _) = type_in(&mut ed, &fake(), b"\x7f");
        assert_eq!(echo, "", "nothing to erase on an empty line");
    }

    #[test]
    fn arrows_move_and_insertion_mid_line_redraws_the_tail() {
        let mut ed = LineEditor::new(100);
        let (echo, actions) = type_in(&mut ed, &fake(), b"hel\x1b[D\x1b[DX\x1bOC\x1bOD\x1b[C\x1b[Clo\r");
        assert_eq!(echo, "hel\x08\x08Xel\x08\x08e\x08ello\r\n");
        assert_eq!(actions, line("hXello"));
        let (echo, _) = type_in(&mut ed, &fake(), b"\x1b[D\x1b[C");
        assert_eq!(echo, "", "arrows stop at the ends of the line");
        let (echo, actions) = type_in(&mut ed, &fake(), b"ab\x02\x02\x06c\r");
        assert_eq!((echo.as_str(), actions), ("ab\x08\x08acb\x08b\r\n", line("acb")), "Ctrl-B/Ctrl-F");
    }

    #[test]
    fn home_and_end_in_every_spelling() {
        for (home, end) in [
            (&b"\x1b[H"[..], &b"\x1b[F"[..]),
            (b"\x1bOH", b"\x1bOF"),
            (b"\x1b[1~", b"\x1b[4~"),
            (b"\x1b[7~", b"\x1b[8~"),
            (b"\x01", b"\x05"),
        ] {
            let mut ed = LineEditor::new(100);
            let mut input = b"bc".to_vec();
            input.extend(home);
            input.push(b'a');
            input.extend(end);
            input.extend(b"d\r");
            let (echo, actions) = type_in(&mut ed, &fake(), &input);
            assert_eq!(echo, "bc\x08\x08abc\x08\x08bcd\r\n", "{home:?} {end:?}");
            assert_eq!(actions, line("abcd"));
        }
    }

    #[test]
    fn delete_and_ctrl_d_remove_the_character_under_the_cursor() {
        let mut ed = LineEditor::new(100);
        let (echo, _) = type_in(&mut ed, &fake(), b"abc\x01\x1b[3~");
        assert_eq!(echo, "abc\x08\x08\x08bc \x08\x08\x08");
        let (echo, actions) = type_in(&mut ed, &fake(), b"\x04\x05\x04\x1b[3~\r");
        assert_eq!(echo, "c \x08\x08c\r\n", "Ctrl-D mid-line deletes; at the end of a line it does nothing");
        assert_eq!(actions, line("c"));
    }

    #[test]
    fn ctrl_d_on_an_empty_line_logs_out() {
        let mut ed = LineEditor::new(100);
        let (echo, actions) = type_in(&mut ed, &fake(), b"\x04");
        assert_eq!((echo.as_str(), actions), ("", vec![Action::Eof]));
    }

    #[test]
    fn ctrl_c_discards_the_line_and_shows_a_new_prompt() {
        let mut ed = LineEditor::new(100);
        let (echo, actions) = type_in(&mut ed, &fake(), b"rm -rf /\x03id\r");
        assert_eq!(echo, "rm -rf /^C\r\n$ id\r\n");
        assert_eq!(actions, line("id"));
    }

    #[test]
    fn ctrl_u_ctrl_k_and_ctrl_w_kill_text() {
        let mut ed = LineEditor::new(100);
        // Ctrl-U kills from the cursor back to the start.
        let (echo, actions) = type_in(&mut ed, &fake(), b"abcd\x1b[D\x15\r");
        assert_eq!(echo, "abcd\x08\x08\x08\x08d   \x08\x08\x08\x08d\r\n");
        assert_eq!(actions, line("d"));
        // Ctrl-K kills from the cursor to the end.
        let (echo, actions) = type_in(&mut ed, &fake(), b"abcd\x1b[D\x1b[D\x0b\r");
        assert_eq!(echo, "abcd\x08\x08  \x08\x08\r\n");
        assert_eq!(actions, line("ab"));
        // Ctrl-W kills the word before the cursor and the blanks after it.
        let (echo, actions) = type_in(&mut ed, &fake(), b"cat /etc/passwd  \x17\r");
        assert_eq!(echo, format!("cat /etc/passwd  {}{}{}\r\n", back(13), " ".repeat(13), back(13)));
        assert_eq!(actions, line("cat "));
    }

    #[test]
    fn ctrl_l_clears_the_screen_and_redraws_prompt_and_line() {
        let mut ed = LineEditor::new(100);
        let (echo, _) = type_in(&mut ed, &fake(), b"abc\x1b[D\x0c");
        assert_eq!(echo, "abc\x08\x1b[H\x1b[2J$ abc\x08");
    }

    #[test]
    fn up_and_down_walk_the_history_and_come_back_to_the_typed_line() {
        let mut ed = LineEditor::new(100);
        let ctx = fake();
        let (echo, _) = type_in(&mut ed, &ctx, b"w\x1b[A");
        assert_eq!(echo, "w\x08id", "the typed line is replaced by the newest entry");
        let (echo, _) = type_in(&mut ed, &ctx, b"\x1b[A");
        assert_eq!(echo, "\x08\x08ls -la");
        let (echo, _) = type_in(&mut ed, &ctx, b"\x1b[A\x10");
        assert_eq!(echo, "", "the oldest entry is the end");
        let (echo, _) = type_in(&mut ed, &ctx, b"\x1b[B");
        assert_eq!(echo, "\x08\x08\x08\x08\x08\x08id    \x08\x08\x08\x08");
        let (echo, _) = type_in(&mut ed, &ctx, b"\x0e");
        assert_eq!(echo, "\x08\x08w \x08", "below the newest entry is the line being typed");
        let (echo, actions) = type_in(&mut ed, &ctx, b"\x1b[B\x1b[A\r");
        assert_eq!(echo, "\x08id\r\n");
        assert_eq!(actions, line("id"));
        let mut empty = LineEditor::new(100);
        let none = Fake { history: vec![], words: vec![] };
        assert_eq!(type_in(&mut empty, &none, b"\x1b[A\x1b[B").0, "");
    }

    #[test]
    fn a_history_entry_longer_than_the_line_limit_is_cut() {
        let mut ed = LineEditor::new(4);
        let ctx = Fake { history: vec!["abcdefgh".into()], words: vec![] };
        let (echo, actions) = type_in(&mut ed, &ctx, b"\x1b[A\r");
        assert_eq!((echo.as_str(), actions), ("abcd\r\n", line("abcd")));
    }

    #[test]
    fn unknown_and_overlong_escape_sequences_are_swallowed() {
        let mut ed = LineEditor::new(100);
        let mut input = b"a\x1b[15~\x1b[1;5C\x1bOP\x1bx\x1b[".to_vec();
        input.extend([b'1'; 40]);
        input.extend(b"Db\r");
        let (echo, actions) = type_in(&mut ed, &fake(), &input);
        assert!(!echo.contains('\x1b'), "{echo:?}");
        // The overlong sequence is dropped at its 17th parameter byte; the
        // rest of the digits are typed text, as a terminal would show them.
        assert_eq!(actions, line(&format!("a{}Db", "1".repeat(40 - MAX_ESCAPE - 1))));
        assert_eq!(echo, format!("a{}Db\r\n", "1".repeat(40 - MAX_ESCAPE - 1)));
    }

    #[test]
    fn a_line_past_the_limit_is_refused() {
        let mut ed = LineEditor::new(3);
        let (echo, actions) = type_in(&mut ed, &fake(), b"abcd");
        assert_eq!((echo.as_str(), actions), ("abc", vec![Action::TooLong]));
        let mut ed = LineEditor::new(3);
        let ctx = Fake { history: vec![], words: vec!["abcdef".into()] };
        assert_eq!(type_in(&mut ed, &ctx, b"a\t").1, vec![Action::TooLong], "a completion counts too");
    }

    #[test]
    fn tab_completes_a_unique_word_then_the_common_prefix_then_lists() {
        let ctx = Fake {
            history: vec![],
            words: vec!["echo".into(), "/etc/".into(), "/etc/passwd".into(), "/etc/shadow".into(), "/etc/ssh/".into()],
        };
        let mut ed = LineEditor::new(100);
        let (echo, _) = type_in(&mut ed, &ctx, b"ec\t");
        assert_eq!(echo, "echo ", "a unique command gets a space");
        let (echo, _) = type_in(&mut ed, &ctx, b"/et\t");
        assert_eq!(echo, "/etc/", "a directory its slash and no space");
        let (echo, _) = type_in(&mut ed, &ctx, b"s\t");
        assert_eq!(echo, "s\x07", "several with nothing in common: the bell");
        let (echo, _) = type_in(&mut ed, &ctx, b"\t");
        assert_eq!(echo, "\r\nshadow  ssh/\r\n$ echo /etc/s", "the second Tab lists, then redraws");
        let (echo, _) = type_in(&mut ed, &ctx, b"\x7fp\t");
        assert_eq!(echo, "\x08 \x08passwd ");
        let (echo, _) = type_in(&mut ed, &ctx, b"x\t");
        assert_eq!(echo, "x\x07", "nothing matches: the bell");
        let (_, actions) = type_in(&mut ed, &ctx, b"\r");
        assert_eq!(actions, line("echo /etc/passwd x"));

        let ctx = Fake { history: vec![], words: vec!["passwd".into(), "passwd-".into()] };
        let mut ed = LineEditor::new(100);
        let (echo, _) = type_in(&mut ed, &ctx, b"pa\t\t");
        assert_eq!(echo, "passwd\x07", "the common prefix, then (as readline) the bell");
        let (echo, _) = type_in(&mut ed, &ctx, b"\t");
        assert_eq!(echo, "\r\npasswd   passwd-\r\n$ passwd", "a Tab that changed nothing lists on the next");
    }

    #[test]
    fn a_long_listing_asks_first() {
        let words: Vec<String> = (0..150).map(|i| format!("f{i:03}")).collect();
        let ctx = Fake { history: vec![], words };
        let mut ed = LineEditor::new(100);
        let (echo, _) = type_in(&mut ed, &ctx, b"f\t\t");
        assert_eq!(echo, "f\x07\r\nDisplay all 150 possibilities? (y or n)");
        let (echo, _) = type_in(&mut ed, &ctx, b"x");
        assert_eq!(echo, "\x07", "only y or n answer");
        let (echo, _) = type_in(&mut ed, &ctx, b"n");
        assert_eq!(echo, "\r\n$ f");
        let (echo, _) = type_in(&mut ed, &ctx, b"\t\ty");
        assert!(echo.starts_with("\x07\r\nDisplay all 150 possibilities? (y or n)\r\nf000  "), "{echo:?}");
        assert!(echo.ends_with("\r\n$ f"), "{echo:?}");
        assert_eq!(echo.matches("\r\n").count(), 2 + 150usize.div_ceil(13), "13 columns of 6");
    }

    #[test]
    fn listings_run_down_the_columns() {
        let names: Vec<String> = ["a", "bb", "c/", "/x/dd/", "e"].iter().map(|s| s.to_string()).collect();
        assert_eq!(columns(&names), "a    bb   c/   dd/  e\r\n");
        let wide: Vec<String> = (0..5).map(|i| format!("{i}{}", "x".repeat(30))).collect();
        let shown = columns(&wide);
        let rows: Vec<&str> = shown.split("\r\n").collect();
        assert!(rows[0].starts_with("0x") && rows[0].contains("  3x"), "{shown:?}");
        assert!(rows[2].starts_with("2x") && !rows[2].contains("  "), "{shown:?}");
    }

    #[test]
    fn the_shell_completes_commands_aliases_and_its_own_filesystem() {
        let persona = Arc::new(crate::persona::Persona::derive("web-01", None, None, 0));
        let mut sh = Shell::new("root", persona);
        assert!(sh.candidates("ec", true).contains(&"echo".to_string()));
        assert!(sh.candidates("l", true).contains(&"ll".to_string()), "aliases");
        assert!(sh.candidates("cd", true).contains(&"cd".to_string()), "builtins");
        assert!(!sh.candidates("yu", true).contains(&"yum".to_string()), "only programs the persona has");
        assert_eq!(sh.candidates("/et", false), vec!["/etc/".to_string()]);
        assert_eq!(sh.candidates("/etc/passw", true), vec!["/etc/passwd".to_string()], "a path in command place");
        sh.run("cd /etc");
        assert_eq!(sh.candidates("hostn", false), vec!["hostname".to_string()], "relative to the cwd");
        sh.run("mkdir -p /tmp/.x; touch /tmp/.x/loot");
        assert!(sh.candidates("/tmp/", false).iter().all(|c| !c.contains(".x")), "dot files stay hidden");
        assert_eq!(sh.candidates("/tmp/.x/", false), vec!["/tmp/.x/loot".to_string()]);
        assert_eq!(
            sh.candidates("~/", false),
            sh.candidates("/root/", false).iter().map(|c| c.replacen("/root/", "~/", 1)).collect::<Vec<_>>()
        );
        assert!(sh.candidates("/nonexistent/", false).is_empty());
        sh.run("true");
        assert_eq!(Context::history(&sh).last().map(String::as_str), Some("true"));
        assert_eq!(Context::prompt(&sh), "root@web-01:/etc# ");
    }
}
