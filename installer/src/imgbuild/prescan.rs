//! A static pre-scan of the IMGBUILD text: which top-level assignments and function
//! definitions are on which line, so that problems found in the evaluated values can point
//! at `IMGBUILD:LINE`. The shell stays the judge of what the file means; this scanner only
//! has to follow quoting (POSIX XCU 2.2), comments, here-documents, command substitutions
//! and nesting well enough not to mistake text inside them for an assignment.

use std::collections::BTreeMap;

/// One top-level `NAME=value` on a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub line: usize,
    /// The value as written, when it is a literal the shell keeps unchanged (single-quoted,
    /// or double-quoted/bare without `$`, backquotes or backslashes).
    pub literal: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prescan {
    /// Assignments outside function bodies and subshells, by name, in file order.
    pub assignments: BTreeMap<String, Vec<Assignment>>,
    /// Function definitions: name → line.
    pub functions: BTreeMap<String, usize>,
}

impl Prescan {
    /// The line of the last top-level assignment of `name` (the one whose value counts).
    pub fn line_of(&self, name: &str) -> Option<usize> {
        self.assignments.get(name).and_then(|v| v.last()).map(|a| a.line)
    }

    /// The line of the part of `name`'s value that starts `offset` lines into `value`, when
    /// the assignment is a literal equal to the evaluated value; else the assignment's line.
    pub fn line_within(&self, name: &str, value: &str, offset: usize) -> Option<usize> {
        let last = self.assignments.get(name).and_then(|v| v.last())?;
        match &last.literal {
            Some(lit) if lit == value => Some(last.line + offset),
            _ => Some(last.line),
        }
    }
}

const KEYWORDS: &[&str] = &["if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "in", "!", "{", "}", "case", "esac"];

/// Scans `text`; never fails (text the scanner does not follow just yields no lines).
pub fn scan(text: &str) -> Prescan {
    let mut l = Lexer { c: text.chars().collect(), pos: 0, line: 1, stack: Vec::new(), cmd_start: true, heredocs: Vec::new(), out: Prescan::default() };
    l.run();
    l.out
}

struct Lexer {
    c: Vec<char>,
    pos: usize,
    line: usize,
    /// Open constructs: '(' subshell or `$(`, '{' brace group or `${`, 'c' a case statement.
    stack: Vec<char>,
    cmd_start: bool,
    heredocs: Vec<(String, bool)>,
    out: Prescan,
}

impl Lexer {
    fn peek(&self, k: usize) -> Option<char> {
        self.c.get(self.pos + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.c.get(self.pos).copied()?;
        self.pos += 1;
        if ch == '\n' {
            self.line += 1;
        }
        Some(ch)
    }

    fn top_level(&self) -> bool {
        !self.stack.iter().any(|&s| s == '(' || s == '{')
    }

    fn run(&mut self) {
        while let Some(ch) = self.peek(0) {
            match ch {
                '\n' => {
                    self.bump();
                    self.cmd_start = true;
                    self.read_heredocs();
                }
                ' ' | '\t' => {
                    self.bump();
                }
                '#' => self.skip_comment(),
                ';' | '&' | '|' => {
                    self.bump();
                    self.cmd_start = true;
                }
                '(' => {
                    self.bump();
                    self.stack.push('(');
                    self.cmd_start = true;
                }
                ')' => {
                    self.bump();
                    if self.stack.last() == Some(&'(') {
                        self.stack.pop();
                        self.cmd_start = false;
                    } else {
                        // A case pattern's closing parenthesis: a command follows.
                        self.cmd_start = true;
                    }
                }
                '<' if self.peek(1) == Some('<') => self.heredoc_operator(),
                _ => self.word(),
            }
        }
    }

    fn skip_comment(&mut self) {
        while let Some(ch) = self.peek(0) {
            if ch == '\n' {
                break;
            }
            self.bump();
        }
    }

    /// One word: an assignment, a function name, a keyword, or anything else.
    fn word(&mut self) {
        if self.cmd_start {
            let name_len = self.c[self.pos..].iter().take_while(|ch| ch.is_ascii_alphanumeric() || **ch == '_').count();
            let starts_ok = self.peek(0).is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_');
            if starts_ok && name_len > 0 {
                let name: String = self.c[self.pos..self.pos + name_len].iter().collect();
                let after = self.c.get(self.pos + name_len).copied();
                if after == Some('=') {
                    return self.assignment(name, name_len);
                }
                if self.is_function_def(name_len) {
                    self.out.functions.entry(name).or_insert(self.line);
                    while let Some(ch) = self.bump() {
                        if ch == ')' {
                            break;
                        }
                    }
                    self.cmd_start = true;
                    return;
                }
            }
        }
        let start = self.pos;
        self.skip_word_chars();
        if self.pos == start {
            // A character no rule consumes: step over it rather than loop.
            self.bump();
            return;
        }
        let word: String = self.c[start..self.pos].iter().collect();
        if self.cmd_start && KEYWORDS.contains(&word.as_str()) {
            match word.as_str() {
                "{" => self.stack.push('{'),
                "}" if self.stack.last() == Some(&'{') => {
                    self.stack.pop();
                }
                "case" => self.stack.push('c'),
                "esac" if self.stack.last() == Some(&'c') => {
                    self.stack.pop();
                }
                _ => {}
            }
            // `case WORD in`: the word and `in` are not commands, but harmless to treat so.
            return;
        }
        if self.cmd_start && (word == "export" || word == "readonly") {
            return;
        }
        self.cmd_start = false;
    }

    /// `NAME ( )` follows at the current position.
    fn is_function_def(&self, name_len: usize) -> bool {
        let rest = self.c[self.pos + name_len..].iter().filter(|ch| **ch != ' ' && **ch != '\t');
        let mut rest = rest.take(2);
        rest.next() == Some(&'(') && rest.next() == Some(&')')
    }

    fn assignment(&mut self, name: String, name_len: usize) {
        let line = self.line;
        self.pos += name_len + 1;
        let literal = self.literal_value();
        if self.top_level() {
            self.out.assignments.entry(name).or_default().push(Assignment { line, literal });
        }
        // The value is lexed normally; the next word may be another assignment.
        self.skip_word_chars();
        self.cmd_start = true;
    }

    /// The value at the current position, if the shell keeps it as written.
    fn literal_value(&self) -> Option<String> {
        let rest = &self.c[self.pos..];
        match rest.first() {
            Some('\'') => {
                let end = rest[1..].iter().position(|&ch| ch == '\'')?;
                Some(rest[1..1 + end].iter().collect())
            }
            Some('"') => {
                let end = rest[1..].iter().position(|&ch| ch == '"')?;
                let body = &rest[1..1 + end];
                (!body.iter().any(|&ch| ch == '$' || ch == '`' || ch == '\\')).then(|| body.iter().collect())
            }
            _ => {
                let end = rest.iter().position(|ch| ch.is_whitespace() || ";&|()<>".contains(*ch)).unwrap_or(rest.len());
                let body = &rest[..end];
                (!body.iter().any(|&ch| "$`\\'\"".contains(ch))).then(|| body.iter().collect())
            }
        }
    }

    /// Consumes one word's characters, following quotes and expansions.
    fn skip_word_chars(&mut self) {
        while let Some(ch) = self.peek(0) {
            match ch {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' => {
                    if (ch == '<' || ch == '>') && self.peek(1) != Some('<') {
                        self.bump();
                        continue;
                    }
                    break;
                }
                '\\' => {
                    self.bump();
                    self.bump();
                }
                '\'' => self.single_quoted(),
                '"' => self.double_quoted(),
                '`' => self.backquoted(),
                '$' => self.dollar(),
                _ => {
                    self.bump();
                }
            }
        }
    }

    fn single_quoted(&mut self) {
        self.bump();
        while let Some(ch) = self.bump() {
            if ch == '\'' {
                break;
            }
        }
    }

    fn double_quoted(&mut self) {
        self.bump();
        while let Some(ch) = self.peek(0) {
            match ch {
                '"' => {
                    self.bump();
                    break;
                }
                '\\' => {
                    self.bump();
                    self.bump();
                }
                '`' => self.backquoted(),
                '$' => self.dollar(),
                _ => {
                    self.bump();
                }
            }
        }
    }

    fn backquoted(&mut self) {
        self.bump();
        while let Some(ch) = self.bump() {
            match ch {
                '\\' => {
                    self.bump();
                }
                '`' => break,
                _ => {}
            }
        }
    }

    /// `$(…)`, `$((…))` and `${…}`: skipped as a nested region (their assignments are not
    /// top-level); `$name` and `$1` are ordinary word characters.
    fn dollar(&mut self) {
        self.bump();
        match self.peek(0) {
            Some('(') => {
                self.bump();
                let saved = (self.cmd_start, self.stack.len());
                self.stack.push('(');
                self.cmd_start = true;
                while self.stack.len() > saved.1 && self.peek(0).is_some() {
                    match self.peek(0) {
                        Some('\n') => {
                            self.bump();
                            self.cmd_start = true;
                        }
                        Some(')') if self.stack.last() == Some(&'(') => {
                            self.bump();
                            self.stack.pop();
                        }
                        _ => self.step_nested(),
                    }
                }
                self.stack.truncate(saved.1);
                self.cmd_start = saved.0;
            }
            Some('{') => {
                self.bump();
                let mut depth = 1;
                while let Some(ch) = self.peek(0) {
                    match ch {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        '\'' => {
                            self.single_quoted();
                            continue;
                        }
                        '"' => {
                            self.double_quoted();
                            continue;
                        }
                        '\\' => {
                            self.bump();
                        }
                        _ => {}
                    }
                    self.bump();
                    if depth == 0 {
                        break;
                    }
                }
            }
            _ => {}
        }
    }

    /// One step of the main loop inside a command substitution.
    fn step_nested(&mut self) {
        match self.peek(0) {
            Some(' ' | '\t' | ';' | '&' | '|') => {
                self.bump();
            }
            Some('(') => {
                self.bump();
                self.stack.push('(');
            }
            Some(')') => {
                self.bump();
            }
            Some('#') => self.skip_comment(),
            Some('<') if self.peek(1) == Some('<') => self.heredoc_operator(),
            _ => self.word(),
        }
    }

    fn heredoc_operator(&mut self) {
        self.bump();
        self.bump();
        let strip = self.peek(0) == Some('-');
        if strip {
            self.bump();
        }
        while matches!(self.peek(0), Some(' ' | '\t')) {
            self.bump();
        }
        let mut delim = String::new();
        while let Some(ch) = self.peek(0) {
            if ch.is_whitespace() || ";&|()<>".contains(ch) {
                break;
            }
            self.bump();
            if ch != '\'' && ch != '"' && ch != '\\' {
                delim.push(ch);
            }
        }
        if !delim.is_empty() {
            self.heredocs.push((delim, strip));
        }
    }

    /// After a newline: the bodies of the here-documents opened on the line just ended.
    fn read_heredocs(&mut self) {
        for (delim, strip) in std::mem::take(&mut self.heredocs) {
            while self.peek(0).is_some() {
                let start = self.pos;
                while self.peek(0).is_some_and(|ch| ch != '\n') {
                    self.pos += 1;
                }
                let mut text: String = self.c[start..self.pos].iter().collect();
                if strip {
                    text = text.trim_start_matches('\t').to_string();
                }
                self.bump();
                if text == delim {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_and_functions_map_to_lines() {
        let text = "# comment x=1\nimgname=mx\ntarget='arch'\npackages=\"\n  base\n  linux\n\"\nexport hostname=mx.example.org\nprovision() {\n  inner=1\n  echo \"$(y=2)\"\n}\nsetup ()\n{\n:\n}\na=1 b=$(echo c=3)\n";
        let p = scan(text);
        assert_eq!(p.line_of("imgname"), Some(2));
        assert_eq!(p.line_of("target"), Some(3));
        assert_eq!(p.line_of("packages"), Some(4));
        assert_eq!(p.line_of("hostname"), Some(8));
        assert_eq!(p.line_of("a"), Some(17));
        assert_eq!(p.line_of("b"), Some(17));
        for absent in ["x", "inner", "y", "c"] {
            assert_eq!(p.line_of(absent), None, "{absent}");
        }
        assert_eq!(p.functions.get("provision"), Some(&9));
        assert_eq!(p.functions.get("setup"), Some(&13));
        assert_eq!(p.assignments["target"][0].literal.as_deref(), Some("arch"));
        assert_eq!(p.line_within("packages", "\n  base\n  linux\n", 2), Some(6));
    }

    #[test]
    fn heredocs_quotes_and_case_do_not_confuse_it() {
        let text = "cat <<EOF >/dev/null\nfake=1\nEOF\nx='a\nb=2'\ncase $x in\n  a) y=1 ;;\n  *) z=2 ;;\nesac\nlast=\"${x:-q}\"\n";
        let p = scan(text);
        assert_eq!(p.line_of("fake"), None);
        assert_eq!(p.line_of("b"), None);
        assert_eq!(p.line_of("x"), Some(4));
        assert_eq!(p.line_of("y"), Some(7));
        assert_eq!(p.line_of("z"), Some(8));
        assert_eq!(p.line_of("last"), Some(10));
        assert_eq!(p.assignments["last"][0].literal, None);
    }

    #[test]
    fn later_assignments_win() {
        let p = scan("target=debian\ntarget=arch\n");
        assert_eq!(p.line_of("target"), Some(2));
    }
}
