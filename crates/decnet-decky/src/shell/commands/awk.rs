//! `awk`: the part of the language bot scripts and miner droppers use.
//!
//! Rules (`BEGIN`, `END`, an expression or `/regex/` pattern, an action or
//! none), statements separated by `;` or newlines (`print` with commas,
//! `printf`, assignments and `+=`-style updates, `++`/`--`, `if`/`else`,
//! `next`, `exit`), expressions with awk's precedence (`||`, `&&`, `~`,
//! comparisons, concatenation, arithmetic, unary, `$expr`), the variables
//! `NR`, `FNR`, `NF`, `FS`, `OFS`, `-v` assignments, and the functions
//! `length`, `substr`, `index`, `tolower`, `toupper`, `int`, `sprintf`.
//! Regular expressions go through the `regex` crate (linear time, size
//! bounded), so a hostile pattern cannot blow up. Like the rest of the
//! shell, the work is bounded: the program's length and the number of
//! statements run per invocation.

use std::collections::HashMap;

use super::Output;
use crate::shell::Shell;

/// Longest program text accepted.
const MAX_PROGRAM: usize = 8 * 1024;
/// Statements executed per invocation before awk gives up.
const MAX_STEPS: usize = 200_000;
/// Compiled size bound for one regular expression.
const REGEX_SIZE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Regex(String),
    Ident(String),
    Dollar,
    Op(&'static str),
    LBrace,
    RBrace,
    LParen,
    RParen,
    Semi,
    Comma,
}

const OPS: &[&str] = &[
    "&&", "||", "==", "!=", "<=", ">=", "!~", "+=", "-=", "*=", "/=", "%=", "++", "--", "<", ">", "~", "!", "+", "-",
    "*", "/", "%", "=", "?", ":",
];

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // A slash starts a regex where an operand is expected.
        let operand_expected = matches!(
            toks.last(),
            None | Some(Tok::Op(_) | Tok::LParen | Tok::LBrace | Tok::RBrace | Tok::Semi | Tok::Comma)
        );
        match c {
            ' ' | '\t' | '\r' => i += 1,
            '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
            '\n' | ';' => {
                toks.push(Tok::Semi);
                i += 1;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '{' => {
                toks.push(Tok::LBrace);
                i += 1;
            }
            '}' => {
                toks.push(Tok::RBrace);
                i += 1;
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            '$' => {
                toks.push(Tok::Dollar);
                i += 1;
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                        match chars[i] {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            c @ ('\\' | '"' | '/') => s.push(c),
                            other => {
                                s.push('\\');
                                s.push(other);
                            }
                        }
                    } else {
                        s.push(chars[i]);
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("non-terminated string".into());
                }
                i += 1;
                toks.push(Tok::Str(s));
            }
            '/' if operand_expected => {
                let mut s = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '/' {
                    if chars[i] == '\\' && chars.get(i + 1) == Some(&'/') {
                        i += 1;
                    }
                    s.push(chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("non-terminated regular expression".into());
                }
                i += 1;
                toks.push(Tok::Regex(s));
            }
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                toks.push(Tok::Num(text.parse().map_err(|_| format!("bad number {text}"))?));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            _ => {
                let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
                let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                    return Err(format!("syntax error at source line 1 near {c}"));
                };
                toks.push(Tok::Op(op));
                i += op.len();
            }
        }
    }
    Ok(toks)
}

#[derive(Debug, Clone)]
enum Expr {
    Num(f64),
    Str(String),
    /// A bare `/re/`: matches `$0`.
    Regex(String),
    Field(Box<Expr>),
    Var(String),
    Bin(Box<Expr>, &'static str, Box<Expr>),
    Concat(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    /// Target, operator (`=`, `+=`, …), value.
    Assign(Box<Expr>, &'static str, Box<Expr>),
    /// Target, delta, whether the old value is the result (`x++`).
    Incr(Box<Expr>, f64, bool),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

#[derive(Debug, Clone)]
enum Stmt {
    Print(Vec<Expr>),
    Printf(Vec<Expr>),
    Expr(Expr),
    If(Expr, Vec<Stmt>, Vec<Stmt>),
    While(Expr, Vec<Stmt>),
    /// `for (init; cond; step) body`.
    For(Option<Expr>, Option<Expr>, Option<Expr>, Vec<Stmt>),
    Next,
    Exit,
}

#[derive(Debug, Clone)]
enum Pattern {
    Begin,
    End,
    All,
    When(Expr),
}

/// A pattern and its action (none: print the record).
type Rule = (Pattern, Option<Vec<Stmt>>);

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn skip_semis(&mut self) {
        while self.eat(&Tok::Semi) {}
    }
    fn err<T>(&self) -> Result<T, String> {
        Err(format!("syntax error at source line 1 near token {}", self.pos + 1))
    }

    fn program(&mut self) -> Result<Vec<Rule>, String> {
        let mut rules = Vec::new();
        self.skip_semis();
        while self.peek().is_some() {
            let pattern = match self.peek() {
                Some(Tok::Ident(w)) if w == "BEGIN" => {
                    self.pos += 1;
                    Pattern::Begin
                }
                Some(Tok::Ident(w)) if w == "END" => {
                    self.pos += 1;
                    Pattern::End
                }
                Some(Tok::LBrace) => Pattern::All,
                _ => Pattern::When(self.expr()?),
            };
            let body = if self.peek() == Some(&Tok::LBrace) { Some(self.block()?) } else { None };
            rules.push((pattern, body));
            self.skip_semis();
        }
        Ok(rules)
    }

    fn block(&mut self) -> Result<Vec<Stmt>, String> {
        if !self.eat(&Tok::LBrace) {
            return self.err();
        }
        let mut stmts = Vec::new();
        loop {
            self.skip_semis();
            if self.eat(&Tok::RBrace) {
                return Ok(stmts);
            }
            if self.peek().is_none() {
                return self.err();
            }
            stmts.push(self.stmt()?);
        }
    }

    /// A statement or a `{ … }` block (for `if` branches).
    fn body(&mut self) -> Result<Vec<Stmt>, String> {
        self.skip_semis();
        if self.peek() == Some(&Tok::LBrace) {
            self.block()
        } else {
            Ok(vec![self.stmt()?])
        }
    }

    fn stmt(&mut self) -> Result<Stmt, String> {
        match self.peek() {
            Some(Tok::Ident(w)) if w == "print" || w == "printf" => {
                let printf = w == "printf";
                self.pos += 1;
                let mut args = Vec::new();
                let parens = self.peek() == Some(&Tok::LParen) && printf;
                if parens {
                    self.pos += 1;
                }
                if !matches!(self.peek(), None | Some(Tok::Semi | Tok::RBrace)) {
                    args.push(self.expr()?);
                    while self.eat(&Tok::Comma) {
                        args.push(self.expr()?);
                    }
                }
                if parens && !self.eat(&Tok::RParen) {
                    return self.err();
                }
                Ok(if printf { Stmt::Printf(args) } else { Stmt::Print(args) })
            }
            Some(Tok::Ident(w)) if w == "next" => {
                self.pos += 1;
                Ok(Stmt::Next)
            }
            Some(Tok::Ident(w)) if w == "exit" => {
                self.pos += 1;
                Ok(Stmt::Exit)
            }
            Some(Tok::Ident(w)) if w == "if" => {
                self.pos += 1;
                if !self.eat(&Tok::LParen) {
                    return self.err();
                }
                let cond = self.expr()?;
                if !self.eat(&Tok::RParen) {
                    return self.err();
                }
                let then = self.body()?;
                let save = self.pos;
                self.skip_semis();
                let otherwise = if matches!(self.peek(), Some(Tok::Ident(w)) if w == "else") {
                    self.pos += 1;
                    self.body()?
                } else {
                    self.pos = save;
                    Vec::new()
                };
                Ok(Stmt::If(cond, then, otherwise))
            }
            Some(Tok::Ident(w)) if w == "while" => {
                self.pos += 1;
                if !self.eat(&Tok::LParen) {
                    return self.err();
                }
                let cond = self.expr()?;
                if !self.eat(&Tok::RParen) {
                    return self.err();
                }
                Ok(Stmt::While(cond, self.body()?))
            }
            Some(Tok::Ident(w)) if w == "for" => {
                self.pos += 1;
                if !self.eat(&Tok::LParen) {
                    return self.err();
                }
                let mut parts = Vec::new();
                for end in [Tok::Semi, Tok::Semi, Tok::RParen] {
                    if self.eat(&end) {
                        parts.push(None);
                        continue;
                    }
                    parts.push(Some(self.expr()?));
                    if !self.eat(&end) {
                        return self.err();
                    }
                }
                let body = self.body()?;
                let mut parts = parts.into_iter();
                let (init, cond, step) = (parts.next().flatten(), parts.next().flatten(), parts.next().flatten());
                Ok(Stmt::For(init, cond, step, body))
            }
            _ => Ok(Stmt::Expr(self.expr()?)),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.ternary()
    }

    fn ternary(&mut self) -> Result<Expr, String> {
        let cond = self.or()?;
        if self.eat(&Tok::Op("?")) {
            let a = self.ternary()?;
            if !self.eat(&Tok::Op(":")) {
                return self.err();
            }
            let b = self.ternary()?;
            return Ok(Expr::Cond(Box::new(cond), Box::new(a), Box::new(b)));
        }
        if let Some(Tok::Op(op @ ("=" | "+=" | "-=" | "*=" | "/=" | "%="))) = self.peek().cloned() {
            if matches!(cond, Expr::Var(_) | Expr::Field(_)) {
                self.pos += 1;
                let value = self.ternary()?;
                return Ok(Expr::Assign(Box::new(cond), op, Box::new(value)));
            }
        }
        Ok(cond)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.eat(&Tok::Op("||")) {
            l = Expr::Bin(Box::new(l), "||", Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.matching()?;
        while self.eat(&Tok::Op("&&")) {
            l = Expr::Bin(Box::new(l), "&&", Box::new(self.matching()?));
        }
        Ok(l)
    }

    fn matching(&mut self) -> Result<Expr, String> {
        let mut l = self.comparison()?;
        while let Some(Tok::Op(op @ ("~" | "!~"))) = self.peek().cloned() {
            self.pos += 1;
            l = Expr::Bin(Box::new(l), op, Box::new(self.comparison()?));
        }
        Ok(l)
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let l = self.concat()?;
        if let Some(Tok::Op(op @ ("<" | "<=" | "==" | "!=" | ">" | ">="))) = self.peek().cloned() {
            self.pos += 1;
            return Ok(Expr::Bin(Box::new(l), op, Box::new(self.concat()?)));
        }
        Ok(l)
    }

    fn concat(&mut self) -> Result<Expr, String> {
        let mut l = self.additive()?;
        while matches!(
            self.peek(),
            Some(Tok::Num(_) | Tok::Str(_) | Tok::Dollar | Tok::LParen | Tok::Op("!") | Tok::Op("-") | Tok::Op("++"))
        ) || matches!(self.peek(), Some(Tok::Ident(w)) if !matches!(w.as_str(), "in" | "else" | "print" | "printf"))
        {
            // `a -1` is subtraction, handled in additive(); a `!` or `-`
            // here starts a new operand only after a string.
            if matches!(self.peek(), Some(Tok::Op("!" | "-"))) {
                break;
            }
            l = Expr::Concat(Box::new(l), Box::new(self.additive()?));
        }
        Ok(l)
    }

    fn additive(&mut self) -> Result<Expr, String> {
        let mut l = self.multiplicative()?;
        while let Some(Tok::Op(op @ ("+" | "-"))) = self.peek().cloned() {
            self.pos += 1;
            l = Expr::Bin(Box::new(l), op, Box::new(self.multiplicative()?));
        }
        Ok(l)
    }

    fn multiplicative(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        while let Some(Tok::Op(op @ ("*" | "/" | "%"))) = self.peek().cloned() {
            self.pos += 1;
            l = Expr::Bin(Box::new(l), op, Box::new(self.unary()?));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat(&Tok::Op("!")) {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat(&Tok::Op("-")) {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat(&Tok::Op("+")) {
            return self.unary();
        }
        for (op, delta) in [("++", 1.0), ("--", -1.0)] {
            if self.eat(&Tok::Op(op)) {
                return Ok(Expr::Incr(Box::new(self.postfix()?), delta, false));
            }
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let e = self.primary()?;
        if matches!(e, Expr::Var(_) | Expr::Field(_)) {
            for (op, delta) in [("++", 1.0), ("--", -1.0)] {
                if self.eat(&Tok::Op(op)) {
                    return Ok(Expr::Incr(Box::new(e), delta, true));
                }
            }
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Num(n)) => Ok(Expr::Num(n)),
            Some(Tok::Str(s)) => Ok(Expr::Str(s)),
            Some(Tok::Regex(r)) => Ok(Expr::Regex(r)),
            Some(Tok::Dollar) => Ok(Expr::Field(Box::new(self.primary()?))),
            Some(Tok::LParen) => {
                let e = self.expr()?;
                if !self.eat(&Tok::RParen) {
                    return self.err();
                }
                Ok(e)
            }
            Some(Tok::Ident(name)) => {
                if self.peek() == Some(&Tok::LParen) {
                    self.pos += 1;
                    let mut args = Vec::new();
                    if !self.eat(&Tok::RParen) {
                        args.push(self.expr()?);
                        while self.eat(&Tok::Comma) {
                            args.push(self.expr()?);
                        }
                        if !self.eat(&Tok::RParen) {
                            return self.err();
                        }
                    }
                    Ok(Expr::Call(name, args))
                } else if name == "length" {
                    Ok(Expr::Call(name, Vec::new()))
                } else {
                    Ok(Expr::Var(name))
                }
            }
            _ => self.err(),
        }
    }
}

/// A number as awk prints it: integers without a fraction, others `%.6g`.
fn num_str(n: f64) -> String {
    if n.is_finite() && n == n.trunc() && n.abs() < 1e16 {
        format!("{}", n as i64)
    } else {
        let s = format!("{n:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// The leading number of a string, as awk converts it (`"12abc"` is 12).
fn to_num(s: &str) -> f64 {
    let s = s.trim_start();
    let end = s
        .char_indices()
        .take_while(|(i, c)| c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '-' || *c == '+')))
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    s[..end].parse().unwrap_or(0.0)
}

fn looks_numeric(s: &str) -> bool {
    let t = s.trim();
    !t.is_empty() && t.parse::<f64>().is_ok()
}

struct Machine {
    vars: HashMap<String, String>,
    fields: Vec<String>,
    record: String,
    regexes: HashMap<String, Option<regex::Regex>>,
    out: String,
    steps: usize,
}

enum Flow {
    Go,
    Next,
    Exit,
}

impl Machine {
    fn var(&self, name: &str) -> String {
        match name {
            "NF" => self.fields.len().to_string(),
            _ => self.vars.get(name).cloned().unwrap_or_default(),
        }
    }

    fn split(&mut self) {
        let fs = self.var("FS");
        self.fields = if fs == " " || fs.is_empty() {
            self.record.split_whitespace().map(str::to_string).collect()
        } else if fs.chars().count() == 1 {
            self.record.split(fs.as_str()).map(str::to_string).collect()
        } else {
            match self.regex(&fs) {
                Some(re) => re.split(&self.record).map(str::to_string).collect(),
                None => vec![self.record.clone()],
            }
        };
    }

    fn regex(&mut self, pattern: &str) -> Option<regex::Regex> {
        if let Some(re) = self.regexes.get(pattern) {
            return re.clone();
        }
        let re = regex::RegexBuilder::new(pattern).size_limit(REGEX_SIZE).build().ok();
        if self.regexes.len() < 64 {
            self.regexes.insert(pattern.to_string(), re.clone());
        }
        re
    }

    fn field(&self, n: usize) -> String {
        if n == 0 {
            self.record.clone()
        } else {
            self.fields.get(n - 1).cloned().unwrap_or_default()
        }
    }

    fn set(&mut self, target: &Expr, value: String) -> Result<(), String> {
        match target {
            Expr::Var(name) => {
                self.vars.insert(name.clone(), value);
            }
            Expr::Field(n) => {
                let n = to_num(&self.eval(n)?).max(0.0) as usize;
                if n == 0 {
                    self.record = value;
                    self.split();
                } else if n <= 1024 {
                    if self.fields.len() < n {
                        self.fields.resize(n, String::new());
                    }
                    self.fields[n - 1] = value;
                    self.record = self.fields.join(&self.var("OFS"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn truthy(&mut self, e: &Expr) -> Result<bool, String> {
        if let Expr::Regex(r) = e {
            let record = self.record.clone();
            return Ok(self.regex(r).is_some_and(|re| re.is_match(&record)));
        }
        let v = self.eval(e)?;
        // Comparisons and numbers are numeric; a field's text is true when
        // non-empty unless it reads as zero.
        Ok(if looks_numeric(&v) { to_num(&v) != 0.0 } else { !v.is_empty() })
    }

    fn eval(&mut self, e: &Expr) -> Result<String, String> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err("program too long-running".into());
        }
        Ok(match e {
            Expr::Num(n) => num_str(*n),
            Expr::Str(s) => s.clone(),
            Expr::Regex(_) => (self.truthy(e)? as i32).to_string(),
            Expr::Field(n) => {
                let n = to_num(&self.eval(n)?);
                if n < 0.0 {
                    return Err(format!("trying to access out of range field {}", n as i64));
                }
                self.field(n as usize)
            }
            Expr::Var(name) => self.var(name),
            Expr::Concat(a, b) => self.eval(a)? + &self.eval(b)?,
            Expr::Not(a) => ((!self.truthy(a)?) as i32).to_string(),
            Expr::Neg(a) => num_str(-to_num(&self.eval(a)?)),
            Expr::Cond(c, a, b) => {
                if self.truthy(c)? {
                    self.eval(a)?
                } else {
                    self.eval(b)?
                }
            }
            Expr::Assign(target, op, value) => {
                let v = self.eval(value)?;
                let new = if *op == "=" {
                    v
                } else {
                    let old = to_num(&self.eval(target)?);
                    num_str(arith(&op[..1], old, to_num(&v)))
                };
                self.set(target, new.clone())?;
                new
            }
            Expr::Incr(target, delta, post) => {
                let old = to_num(&self.eval(target)?);
                self.set(target, num_str(old + delta))?;
                num_str(if *post { old } else { old + delta })
            }
            Expr::Bin(a, op, b) => match *op {
                "&&" => ((self.truthy(a)? && self.truthy(b)?) as i32).to_string(),
                "||" => ((self.truthy(a)? || self.truthy(b)?) as i32).to_string(),
                "~" | "!~" => {
                    let text = self.eval(a)?;
                    let pattern = match &**b {
                        Expr::Regex(r) => r.clone(),
                        other => self.eval(other)?,
                    };
                    let hit = self.regex(&pattern).is_some_and(|re| re.is_match(&text));
                    ((hit == (*op == "~")) as i32).to_string()
                }
                "<" | "<=" | "==" | "!=" | ">" | ">=" => {
                    let (l, r) = (self.eval(a)?, self.eval(b)?);
                    let ord = if looks_numeric(&l) && looks_numeric(&r) {
                        to_num(&l).partial_cmp(&to_num(&r)).unwrap_or(std::cmp::Ordering::Equal)
                    } else {
                        l.cmp(&r)
                    };
                    use std::cmp::Ordering::*;
                    let hit = match *op {
                        "<" => ord == Less,
                        "<=" => ord != Greater,
                        "==" => ord == Equal,
                        "!=" => ord != Equal,
                        ">" => ord == Greater,
                        _ => ord != Less,
                    };
                    (hit as i32).to_string()
                }
                _ => {
                    let (l, r) = (to_num(&self.eval(a)?), to_num(&self.eval(b)?));
                    if matches!(*op, "/" | "%") && r == 0.0 {
                        return Err("division by zero".into());
                    }
                    num_str(arith(op, l, r))
                }
            },
            Expr::Call(name, args) => {
                let mut vals = Vec::new();
                for a in args {
                    vals.push(self.eval(a)?);
                }
                let arg = |i: usize| vals.get(i).cloned().unwrap_or_default();
                match name.as_str() {
                    "length" if vals.is_empty() => self.record.chars().count().to_string(),
                    "length" => arg(0).chars().count().to_string(),
                    "tolower" => arg(0).to_lowercase(),
                    "toupper" => arg(0).to_uppercase(),
                    "int" => num_str(to_num(&arg(0)).trunc()),
                    "index" => arg(0).find(&arg(1)).map_or(0, |i| arg(0)[..i].chars().count() + 1).to_string(),
                    "substr" => {
                        let s: Vec<char> = arg(0).chars().collect();
                        let start = to_num(&arg(1)).round() as i64;
                        let len = if vals.len() > 2 { to_num(&arg(2)).round() as i64 } else { s.len() as i64 + 1 };
                        let (from, to) = (start.max(1), (start + len).min(s.len() as i64 + 1));
                        if to <= from {
                            String::new()
                        } else {
                            s[(from - 1) as usize..(to - 1) as usize].iter().collect()
                        }
                    }
                    "sprintf" => format(&vals),
                    _ => return Err(format!("calling undefined function {name}")),
                }
            }
        })
    }

    fn run(&mut self, stmts: &[Stmt]) -> Result<Flow, String> {
        for s in stmts {
            match s {
                Stmt::Print(args) => {
                    let line = if args.is_empty() {
                        self.record.clone()
                    } else {
                        let mut parts = Vec::new();
                        for a in args {
                            parts.push(self.eval(a)?);
                        }
                        parts.join(&self.var("OFS"))
                    };
                    self.out.push_str(&line);
                    self.out.push('\n');
                }
                Stmt::Printf(args) => {
                    let mut vals = Vec::new();
                    for a in args {
                        vals.push(self.eval(a)?);
                    }
                    self.out.push_str(&format(&vals));
                }
                Stmt::Expr(e) => {
                    self.eval(e)?;
                }
                Stmt::If(c, then, otherwise) => {
                    let branch = if self.truthy(c)? { then } else { otherwise };
                    match self.run(branch)? {
                        Flow::Go => {}
                        other => return Ok(other),
                    }
                }
                Stmt::While(c, body) => {
                    while self.truthy(c)? {
                        match self.run(body)? {
                            Flow::Go => {}
                            other => return Ok(other),
                        }
                    }
                }
                Stmt::For(init, cond, step, body) => {
                    if let Some(init) = init {
                        self.eval(init)?;
                    }
                    while match cond {
                        Some(c) => self.truthy(c)?,
                        None => true,
                    } {
                        match self.run(body)? {
                            Flow::Go => {}
                            other => return Ok(other),
                        }
                        if let Some(step) = step {
                            self.eval(step)?;
                        }
                    }
                }
                Stmt::Next => return Ok(Flow::Next),
                Stmt::Exit => return Ok(Flow::Exit),
            }
            if self.out.len() > crate::shell::interp::Budget::default().output {
                return Err("output limit".into());
            }
        }
        Ok(Flow::Go)
    }
}

fn arith(op: &str, l: f64, r: f64) -> f64 {
    match op {
        "+" => l + r,
        "-" => l - r,
        "*" => l * r,
        "/" => l / r,
        _ => l % r,
    }
}

/// awk's `printf`/`sprintf`: `%s %d %i %f %x %c %%` with flags and widths.
fn format(vals: &[String]) -> String {
    let Some(fmt) = vals.first() else { return String::new() };
    let mut args = vals[1..].iter();
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' || i + 1 >= chars.len() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len() && "-+ #0123456789.".contains(chars[j]) {
            j += 1;
        }
        let spec: String = chars[i + 1..j].iter().collect();
        let conv = chars.get(j).copied().unwrap_or('%');
        let a = if conv == '%' { String::new() } else { args.next().cloned().unwrap_or_default() };
        let (width_s, precision) = match spec.trim_start_matches(['-', '+', ' ', '#', '0']).split_once('.') {
            Some((w, p)) => (w.to_string(), p.parse::<usize>().ok()),
            None => (spec.trim_start_matches(['-', '+', ' ', '#', '0']).to_string(), None),
        };
        let width: usize = width_s.parse().unwrap_or(0).min(1024);
        let body = match conv {
            '%' => "%".to_string(),
            'd' | 'i' => format!("{}", to_num(&a).trunc() as i64),
            'x' => format!("{:x}", to_num(&a) as i64),
            'X' => format!("{:X}", to_num(&a) as i64),
            'o' => format!("{:o}", to_num(&a) as i64),
            'c' => a.chars().next().map(String::from).unwrap_or_default(),
            'f' | 'F' => format!("{:.*}", precision.unwrap_or(6).min(64), to_num(&a)),
            'e' => format!("{:.*e}", precision.unwrap_or(6).min(64), to_num(&a)),
            'g' => num_str(to_num(&a)),
            's' => match precision {
                Some(p) => a.chars().take(p).collect(),
                None => a,
            },
            other => format!("%{other}"),
        };
        let padded = if spec.starts_with('-') {
            format!("{body:<width$}")
        } else if spec.starts_with('0') && conv != 's' {
            format!("{body:0>width$}")
        } else {
            format!("{body:>width$}")
        };
        out.push_str(&padded);
        i = j + 1;
    }
    out
}

pub fn awk(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let mut fs = " ".to_string();
    let mut assigns = Vec::new();
    let mut rest = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        if let Some(s) = a.strip_prefix("-F").filter(|_| rest.is_empty()) {
            fs = if s.is_empty() {
                i += 1;
                argv.get(i).cloned().unwrap_or_default()
            } else {
                s.to_string()
            };
            if fs == "\\t" || fs == "t" {
                fs = "\t".into();
            }
        } else if a == "-v" && rest.is_empty() {
            i += 1;
            assigns.extend(argv.get(i).cloned());
        } else if a == "--" && rest.is_empty() {
        } else {
            rest.push(a.clone());
        }
        i += 1;
    }
    let Some(program) = rest.first().cloned() else {
        return Output::fail(2, "usage: awk [-F fs][-v var=value][prog | -f progfile][file ...]\n");
    };
    if program.len() > MAX_PROGRAM {
        return Output::fail(2, "awk: program too long\n");
    }
    let rules = match lex(&program).and_then(|toks| Parser { toks, pos: 0 }.program()) {
        Ok(r) => r,
        Err(e) => {
            return Output::fail(2, format!("awk: line 1: {e}\n"));
        }
    };
    let mut m = Machine {
        vars: HashMap::new(),
        fields: Vec::new(),
        record: String::new(),
        regexes: HashMap::new(),
        out: String::new(),
        steps: 0,
    };
    m.vars.insert("FS".into(), fs);
    m.vars.insert("OFS".into(), " ".into());
    for a in assigns {
        if let Some((k, v)) = a.split_once('=') {
            m.vars.insert(k.to_string(), String::from_utf8_lossy(&super::text::unescape_echo(v)).into_owned());
        }
    }
    let (inputs, err) = super::text::inputs(sh, "awk", &rest[1..], stdin);
    let mut status = i32::from(!err.is_empty()) * 2;
    let result = (|| -> Result<(), String> {
        let mut exiting = false;
        for (p, body) in &rules {
            if matches!(p, Pattern::Begin) {
                if let Flow::Exit = m.run(body.as_deref().unwrap_or(&[]))? {
                    exiting = true;
                    break;
                }
            }
        }
        let mut nr = 0usize;
        let needs_input = rules.iter().any(|(p, _)| !matches!(p, Pattern::Begin));
        'files: for data in inputs.iter().filter(|_| needs_input && !exiting) {
            for (fnr, line) in String::from_utf8_lossy(data).lines().enumerate() {
                nr += 1;
                m.vars.insert("NR".into(), nr.to_string());
                m.vars.insert("FNR".into(), (fnr + 1).to_string());
                m.record = line.to_string();
                m.split();
                for (p, body) in &rules {
                    let selected = match p {
                        Pattern::Begin | Pattern::End => false,
                        Pattern::All => true,
                        Pattern::When(e) => m.truthy(e)?,
                    };
                    if !selected {
                        continue;
                    }
                    let flow = match body {
                        Some(stmts) => m.run(stmts)?,
                        None => m.run(&[Stmt::Print(Vec::new())])?,
                    };
                    match flow {
                        Flow::Go => {}
                        Flow::Next => break,
                        Flow::Exit => {
                            exiting = true;
                            break 'files;
                        }
                    }
                }
            }
        }
        let _ = exiting;
        for (p, body) in &rules {
            if matches!(p, Pattern::End) {
                if let Flow::Exit = m.run(body.as_deref().unwrap_or(&[]))? {
                    break;
                }
            }
        }
        Ok(())
    })();
    let mut err = err;
    if let Err(e) = result {
        err.push_str(&format!("awk: run time error: {e}\n"));
        status = 2;
    }
    Output::both(m.out.into_bytes(), err, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(program: &[&str], input: &str) -> (String, i32) {
        let persona = crate::persona::Persona::derive("awk-test", None, None, 0);
        let mut sh = Shell::new("root", std::sync::Arc::new(persona));
        let mut argv = vec!["awk".to_string()];
        argv.extend(program.iter().map(|s| s.to_string()));
        let o = awk(&mut sh, &argv, input.as_bytes());
        (String::from_utf8_lossy(&o.out).into_owned() + &String::from_utf8_lossy(&o.err), o.status)
    }

    #[test]
    fn the_one_liners_bots_send() {
        let cpu = "model name\t: Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz\n";
        assert_eq!(run(&["{print $4,$5,$6,$7,$8,$9;}"], cpu).0, "Intel(R) Xeon(R) Gold 6248R CPU @\n");
        let df = "Filesystem      Size  Used Avail Use% Mounted on\n/dev/sda1        40G  5.2G   35G  13% /\n";
        assert_eq!(run(&["FNR == 2 {print $2;}"], df).0, "40G\n");
        let free = "              total        used\nMem:           3932        1690\n";
        assert_eq!(run(&["/Mem/ {print $2 ,$3}"], free).0, "3932 1690\n");
        assert_eq!(run(&["-F:", "{print $1}"], "root:x:0\nbin:x:1\n").0, "root\nbin\n");
        assert_eq!(run(&["-F", ":", "$3 == 0 {print $1}"], "root:x:0\nbin:x:1\n").0, "root\n");
        assert_eq!(run(&["{s+=$1} END {print s}"], "1\n2\n3.5\n").0, "6.5\n");
        assert_eq!(run(&["END{print NR}"], "a\nb\n").0, "2\n");
        assert_eq!(run(&["NR==1"], "a\nb\n").0, "a\n");
        assert_eq!(run(&["{print $NF}"], "a b c\n").0, "c\n");
        assert_eq!(run(&["{print $(NF-1)}"], "a b c\n").0, "b\n");
        assert_eq!(run(&["{printf \"%s-%5.1f|%-3d|%03d\\n\", $1, $2, $3, $3}"], "x 2.5 7\n").0, "x-  2.5|7  |007\n");
        assert_eq!(run(&["BEGIN { for (i = 0; i < 3; i++) s = s i; print s }"], "").0, "012\n");
        assert_eq!(run(&["BEGIN { x = 3; x++; print x * 2, length(\"abc\") }"], "").0, "8 3\n");
        assert_eq!(
            run(&["$1 ~ /^r/ { print toupper($1) } $1 !~ /^r/ { n++ } END { print n }"], "root\nbin\nsys\n").0,
            "ROOT\n2\n"
        );
        assert_eq!(run(&["{ if ($2 > 10) print $1; else print \"small\" }"], "a 11\nb 9\n").0, "a\nsmall\n");
        assert_eq!(run(&["{ print substr($0, 2, 3) }"], "abcdef\n").0, "bcd\n");
        assert_eq!(run(&["{ print $1\" \"$2 }"], "a b\n").0, "a b\n");
    }

    #[test]
    fn bad_programs_fail_like_awk_and_hostile_ones_end() {
        let (out, status) = run(&["{print $1"], "a\n");
        assert_eq!(status, 2);
        assert!(out.starts_with("awk: line 1: syntax error"), "{out}");
        // A catastrophic-backtracking pattern is linear in the regex crate.
        let (_, status) = run(&["/(a+)+$/"], &format!("{}b\n", "a".repeat(5000)));
        assert_eq!(status, 0);
        // A runaway loop is bounded by the step budget, not time.
        let (out, status) = run(&["BEGIN { while (1) x++ }"], "");
        assert_eq!((out.as_str(), status), ("awk: run time error: program too long-running\n", 2));
    }
}
