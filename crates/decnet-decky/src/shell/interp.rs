//! Running a parsed command line: lists, pipelines, `&&`/`||`, loops and
//! conditionals, functions, expansions and redirections, over the session
//! filesystem. Parsing is brush-parser's (a maintained bash grammar);
//! this file only walks its tree.
//!
//! Nothing here touches the host: a "pipeline" passes byte buffers from
//! one emulated command to the next, a redirection writes into the
//! session filesystem. Every line runs under a [`Budget`] of steps,
//! output bytes and call depth, so `while true`, `yes`, a fork bomb or
//! `cat /dev/zero` end when the budget does, with the status a killed
//! command has.

use brush_parser::ast;
use brush_parser::word::{Parameter, ParameterExpr, SpecialParameter, WordPiece};

use super::fs::{normalize, Content, Node};
use super::{commands, Shell};

/// Work one command line may do.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Simple commands and loop iterations.
    pub steps: u32,
    /// Bytes of output (stdout + stderr) kept.
    pub output: usize,
    /// Function and substitution nesting.
    pub depth: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { steps: 5_000, output: 256 * 1024, depth: 24 }
    }
}

/// Status of a command the budget stopped (as if killed by SIGKILL).
pub const KILLED: i32 = 137;

/// What one command's standard streams carry.
#[derive(Debug, Default)]
pub struct Streams {
    pub stdin: Vec<u8>,
    pub out: Vec<u8>,
    pub err: Vec<u8>,
}

/// Why execution unwinds early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Normal,
    /// `exit`/`logout`: end the session after this line.
    Exit,
    /// The budget ran out.
    Exhausted,
    Break,
    Continue,
    Return,
}

fn parser_options() -> brush_parser::ParserOptions {
    brush_parser::ParserOptions::default()
}

/// Parse `text` as a program; `None` with bash's message on a syntax error.
pub fn parse(text: &str) -> Result<ast::Program, String> {
    let mut parser = brush_parser::Parser::new(std::io::Cursor::new(text.as_bytes()), &parser_options());
    parser.parse_program().map_err(|e| {
        let near = text.split_whitespace().last().unwrap_or("newline");
        let _ = e;
        format!("syntax error near unexpected token `{}'", near.chars().take(32).collect::<String>())
    })
}

impl Shell {
    /// Spend one step; false when the budget is gone.
    fn step(&mut self) -> bool {
        if self.budget.steps == 0 {
            return false;
        }
        self.budget.steps -= 1;
        true
    }

    /// Run a whole program with `io`; returns the flow and sets `$?`.
    pub(crate) fn run_program(&mut self, program: &ast::Program, io: &mut Streams) -> Flow {
        for list in &program.complete_commands {
            let flow = self.run_list(list, io);
            if flow != Flow::Normal {
                return flow;
            }
        }
        Flow::Normal
    }

    fn run_list(&mut self, list: &ast::CompoundList, io: &mut Streams) -> Flow {
        for ast::CompoundListItem(and_or, _separator) in &list.0 {
            // `cmd &` runs in the foreground here: there is no job control to
            // fake, and its output is what an attacker expects to see anyway.
            let flow = self.run_and_or(and_or, io);
            if flow != Flow::Normal {
                return flow;
            }
        }
        Flow::Normal
    }

    fn run_and_or(&mut self, list: &ast::AndOrList, io: &mut Streams) -> Flow {
        let flow = self.run_pipeline(&list.first, io);
        if flow != Flow::Normal {
            return flow;
        }
        for next in &list.additional {
            let (run, pipeline) = match next {
                ast::AndOr::And(p) => (self.last_status == 0, p),
                ast::AndOr::Or(p) => (self.last_status != 0, p),
            };
            if run {
                let flow = self.run_pipeline(pipeline, io);
                if flow != Flow::Normal {
                    return flow;
                }
            }
        }
        Flow::Normal
    }

    fn run_pipeline(&mut self, pipeline: &ast::Pipeline, io: &mut Streams) -> Flow {
        let mut input = std::mem::take(&mut io.stdin);
        let last = pipeline.seq.len().saturating_sub(1);
        let mut flow = Flow::Normal;
        for (i, command) in pipeline.seq.iter().enumerate() {
            let mut stage = Streams { stdin: std::mem::take(&mut input), ..Default::default() };
            flow = self.run_command(command, &mut stage);
            io.err.append(&mut stage.err);
            if i == last {
                io.out.append(&mut stage.out);
            } else {
                input = stage.out;
            }
            if flow != Flow::Normal {
                break;
            }
        }
        if pipeline.bang {
            self.last_status = i32::from(self.last_status == 0);
        }
        flow
    }

    fn run_command(&mut self, command: &ast::Command, io: &mut Streams) -> Flow {
        match command {
            ast::Command::Simple(simple) => self.run_simple(simple, io),
            ast::Command::Compound(compound, redirects) => {
                let mut inner = Streams { stdin: std::mem::take(&mut io.stdin), ..Default::default() };
                let plan = match redirects {
                    Some(r) => match self.plan_redirects(&r.0, &mut inner) {
                        Ok(p) => p,
                        Err(msg) => {
                            io.err.extend_from_slice(format!("{}: {msg}\n", self.name_for_errors()).as_bytes());
                            self.last_status = 1;
                            return Flow::Normal;
                        }
                    },
                    None => Redirects::default(),
                };
                let flow = self.run_compound(compound, &mut inner);
                self.finish_redirects(plan, inner, io);
                flow
            }
            ast::Command::Function(def) => {
                if self.functions.len() < 64 {
                    self.functions.insert(def.fname.value.clone(), std::sync::Arc::new(def.body.clone()));
                }
                self.last_status = 0;
                Flow::Normal
            }
            ast::Command::ExtendedTest(expr, _) => {
                let ok = self.extended_test(&expr.expr);
                self.last_status = i32::from(!ok);
                Flow::Normal
            }
        }
    }

    fn run_compound(&mut self, compound: &ast::CompoundCommand, io: &mut Streams) -> Flow {
        match compound {
            ast::CompoundCommand::BraceGroup(g) => self.run_list(&g.list, io),
            ast::CompoundCommand::Subshell(s) => {
                // A subshell's cd and variables do not leak out.
                let (cwd, env) = (self.cwd.clone(), self.vars.clone());
                let flow = self.run_list(&s.list, io);
                self.cwd = cwd;
                self.vars = env;
                if flow == Flow::Exit {
                    Flow::Normal
                } else {
                    flow
                }
            }
            ast::CompoundCommand::IfClause(c) => {
                let flow = self.run_list(&c.condition, io);
                if flow != Flow::Normal {
                    return flow;
                }
                if self.last_status == 0 {
                    return self.run_list(&c.then, io);
                }
                for clause in c.elses.iter().flatten() {
                    match &clause.condition {
                        Some(cond) => {
                            let flow = self.run_list(cond, io);
                            if flow != Flow::Normal {
                                return flow;
                            }
                            if self.last_status == 0 {
                                return self.run_list(&clause.body, io);
                            }
                        }
                        None => return self.run_list(&clause.body, io),
                    }
                }
                self.last_status = 0;
                Flow::Normal
            }
            ast::CompoundCommand::ForClause(f) => {
                let values: Vec<String> = match &f.values {
                    Some(words) => {
                        let mut all = Vec::new();
                        for w in words {
                            all.extend(self.expand_word(w, io));
                        }
                        all
                    }
                    None => self.positional.clone(),
                };
                self.last_status = 0;
                for v in values {
                    if !self.step() {
                        return Flow::Exhausted;
                    }
                    self.set_var(&f.variable_name, v);
                    match self.run_list(&f.body.list, io) {
                        Flow::Break => break,
                        Flow::Continue | Flow::Normal => {}
                        other => return other,
                    }
                }
                Flow::Normal
            }
            ast::CompoundCommand::WhileClause(ast::WhileOrUntilClauseCommand(cond, body, _))
            | ast::CompoundCommand::UntilClause(ast::WhileOrUntilClauseCommand(cond, body, _)) => {
                let until = matches!(compound, ast::CompoundCommand::UntilClause(_));
                loop {
                    if !self.step() {
                        return Flow::Exhausted;
                    }
                    let flow = self.run_list(cond, io);
                    if flow != Flow::Normal {
                        return flow;
                    }
                    if (self.last_status == 0) == until {
                        break;
                    }
                    match self.run_list(&body.list, io) {
                        Flow::Break => break,
                        Flow::Continue | Flow::Normal => {}
                        other => return other,
                    }
                }
                self.last_status = 0;
                Flow::Normal
            }
            ast::CompoundCommand::CaseClause(c) => {
                let value = self.expand_word(&c.value, io).join(" ");
                for item in &c.cases {
                    let hit = item.patterns.iter().any(|p| {
                        let pattern = self.expand_word(p, io).join(" ");
                        glob_match(&pattern, &value)
                    });
                    if hit {
                        return match &item.cmd {
                            Some(list) => self.run_list(list, io),
                            None => Flow::Normal,
                        };
                    }
                }
                self.last_status = 0;
                Flow::Normal
            }
            ast::CompoundCommand::Arithmetic(a) => {
                let v = self.arithmetic(&a.expr.value);
                self.last_status = i32::from(v == 0);
                Flow::Normal
            }
            ast::CompoundCommand::ArithmeticForClause(_) | ast::CompoundCommand::Coprocess(_) => {
                self.last_status = 0;
                Flow::Normal
            }
        }
    }

    fn run_simple(&mut self, simple: &ast::SimpleCommand, io: &mut Streams) -> Flow {
        if !self.step() {
            return Flow::Exhausted;
        }
        let mut assignments: Vec<(String, String)> = Vec::new();
        let mut redirects: Vec<ast::IoRedirect> = Vec::new();
        let mut argv: Vec<String> = Vec::new();
        let items = simple.prefix.iter().flat_map(|p| p.0.iter());
        for item in items {
            match item {
                ast::CommandPrefixOrSuffixItem::AssignmentWord(a, _) => {
                    let name = match &a.name {
                        ast::AssignmentName::VariableName(n) => n.clone(),
                        ast::AssignmentName::ArrayElementName(n, _) => n.clone(),
                    };
                    let value = match &a.value {
                        ast::AssignmentValue::Scalar(w) => self.expand_word_joined(w, io),
                        ast::AssignmentValue::Array(items) => {
                            items.iter().map(|(_, w)| self.expand_word_joined(w, io)).collect::<Vec<_>>().join(" ")
                        }
                    };
                    assignments.push((name, value));
                }
                ast::CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r.clone()),
                ast::CommandPrefixOrSuffixItem::Word(w) => argv.extend(self.expand_word(w, io)),
                ast::CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {}
            }
        }
        if let Some(w) = &simple.word_or_name {
            argv.extend(self.expand_word(w, io));
        }
        for item in simple.suffix.iter().flat_map(|s| s.0.iter()) {
            match item {
                ast::CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r.clone()),
                ast::CommandPrefixOrSuffixItem::Word(w) => argv.extend(self.expand_word(w, io)),
                ast::CommandPrefixOrSuffixItem::AssignmentWord(_, w) => argv.extend(self.expand_word(w, io)),
                ast::CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {}
            }
        }
        if argv.is_empty() {
            for (k, v) in std::mem::take(&mut assignments) {
                self.set_var(&k, v);
            }
            self.last_status = 0;
            if redirects.is_empty() {
                return Flow::Normal;
            }
        }
        // Aliases: the first word only, once (no recursion through aliases).
        if let Some(expansion) = argv.first().and_then(|a| self.aliases.get(a)).cloned() {
            let mut words: Vec<String> = expansion.split_whitespace().map(str::to_string).collect();
            words.extend(argv.drain(1..));
            argv = words;
        }
        let mut inner = Streams { stdin: std::mem::take(&mut io.stdin), ..Default::default() };
        let plan = match self.plan_redirects(&redirects, &mut inner) {
            Ok(p) => p,
            Err(msg) => {
                io.err.extend_from_slice(format!("{}: {msg}\n", self.name_for_errors()).as_bytes());
                self.last_status = 1;
                return Flow::Normal;
            }
        };
        let flow = if argv.is_empty() {
            Flow::Normal
        } else {
            // `VAR=x cmd` sets VAR for that command only.
            let saved: Vec<(String, Option<super::Var>)> =
                assignments.iter().map(|(k, _)| (k.clone(), self.vars.get(k).cloned())).collect();
            for (k, v) in assignments {
                self.set_var(&k, v);
            }
            let flow = self.invoke(&argv, &mut inner);
            for (k, old) in saved {
                match old {
                    Some(v) => {
                        self.vars.insert(k, v);
                    }
                    None => {
                        self.vars.remove(&k);
                    }
                }
            }
            flow
        };
        self.finish_redirects(plan, inner, io);
        flow
    }

    /// Run one command by name: a function, a builtin or a program.
    pub(crate) fn invoke(&mut self, argv: &[String], io: &mut Streams) -> Flow {
        let name = argv[0].as_str();
        if let Some(body) = self.functions.get(name).cloned() {
            if self.budget.depth == 0 {
                io.err.extend_from_slice(b"-bash: maximum function nesting level exceeded\n");
                self.last_status = 1;
                return Flow::Exhausted;
            }
            self.budget.depth -= 1;
            let saved = std::mem::replace(&mut self.positional, argv[1..].to_vec());
            let flow = self.run_compound(&body.0, io);
            self.positional = saved;
            self.budget.depth += 1;
            return if flow == Flow::Return { Flow::Normal } else { flow };
        }
        let output = commands::run(self, argv, &io.stdin);
        io.out.extend_from_slice(&output.out);
        io.err.extend_from_slice(&output.err);
        self.last_status = output.status;
        output.flow
    }

    /// Read-only view of a variable (`$HOME` and friends).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.value.as_str())
    }

    pub fn set_var(&mut self, name: &str, value: String) {
        if self.vars.len() >= 256 && !self.vars.contains_key(name) {
            return;
        }
        let value: String = value.chars().take(64 * 1024).collect();
        let exported = self.vars.get(name).is_some_and(|v| v.exported);
        self.vars.insert(name.to_string(), super::Var { value, exported });
    }

    fn name_for_errors(&self) -> &'static str {
        if self.persona.family == crate::persona::OsFamily::Embedded {
            "-sh"
        } else {
            "-bash"
        }
    }

    /// Expand a word into fields (after splitting and globbing).
    pub(crate) fn expand_word(&mut self, word: &ast::Word, io: &mut Streams) -> Vec<String> {
        let pieces = match brush_parser::word::parse(&word.value, &parser_options()) {
            Ok(p) => p,
            Err(_) => return vec![word.value.clone()],
        };
        let mut fields: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut has_field = false;
        let mut globbable = false;
        for p in pieces {
            self.expand_piece(&p.piece, false, io, &mut fields, &mut current, &mut has_field, &mut globbable);
        }
        if has_field {
            fields.push(current);
        }
        if globbable {
            let mut out = Vec::new();
            for f in fields {
                let matches = self.glob(&f);
                if matches.is_empty() {
                    out.push(f);
                } else {
                    out.extend(matches);
                }
            }
            return out;
        }
        fields
    }

    fn expand_word_joined(&mut self, word: &ast::Word, io: &mut Streams) -> String {
        let pieces = match brush_parser::word::parse(&word.value, &parser_options()) {
            Ok(p) => p,
            Err(_) => return word.value.clone(),
        };
        let mut fields = Vec::new();
        let mut current = String::new();
        let (mut has, mut glob) = (false, false);
        for p in pieces {
            self.expand_piece(&p.piece, true, io, &mut fields, &mut current, &mut has, &mut glob);
        }
        fields.push(current);
        fields.join(" ")
    }

    #[allow(clippy::too_many_arguments)]
    fn expand_piece(
        &mut self,
        piece: &WordPiece,
        quoted: bool,
        io: &mut Streams,
        fields: &mut Vec<String>,
        current: &mut String,
        has_field: &mut bool,
        globbable: &mut bool,
    ) {
        let literal = |text: &str, current: &mut String, has_field: &mut bool| {
            current.push_str(text);
            *has_field = true;
        };
        match piece {
            WordPiece::Text(t) => {
                if !quoted && t.contains(['*', '?', '[']) {
                    *globbable = true;
                }
                literal(t, current, has_field)
            }
            WordPiece::SingleQuotedText(t) => literal(t, current, has_field),
            WordPiece::AnsiCQuotedText(t) => literal(&super::commands::text::unescape_c(t), current, has_field),
            WordPiece::EscapeSequence(t) => literal(t.strip_prefix('\\').unwrap_or(t), current, has_field),
            WordPiece::DoubleQuotedSequence(inner) | WordPiece::GettextDoubleQuotedSequence(inner) => {
                *has_field = true;
                for p in inner {
                    self.expand_piece(&p.piece, true, io, fields, current, has_field, globbable);
                }
            }
            WordPiece::TildeExpansion(t) => {
                let home = match t {
                    brush_parser::word::TildeExpr::Home => self.var("HOME").unwrap_or("/").to_string(),
                    brush_parser::word::TildeExpr::UserHome(u) => {
                        self.persona.user(u).map(|u| u.home.clone()).unwrap_or_else(|| format!("~{u}"))
                    }
                    brush_parser::word::TildeExpr::WorkingDir => self.cwd.clone(),
                    _ => self.cwd.clone(),
                };
                literal(&home, current, has_field)
            }
            WordPiece::ParameterExpansion(expr) => {
                let value = self.parameter(expr);
                self.splice(&value, quoted, fields, current, has_field);
            }
            WordPiece::CommandSubstitution(text) | WordPiece::BackquotedCommandSubstitution(text) => {
                let value = self.substitute(text, io);
                self.splice(&value, quoted, fields, current, has_field);
            }
            WordPiece::ArithmeticExpression(e) => {
                let v = self.arithmetic(&e.value).to_string();
                literal(&v, current, has_field)
            }
        }
    }

    /// Put an expansion's value into the fields: quoted it is one piece of
    /// the current field; unquoted it is split on whitespace.
    fn splice(&self, value: &str, quoted: bool, fields: &mut Vec<String>, current: &mut String, has: &mut bool) {
        if quoted {
            current.push_str(value);
            *has = true;
            return;
        }
        let mut parts = value.split([' ', '\t', '\n']).peekable();
        let starts_blank = value.starts_with([' ', '\t', '\n']);
        if starts_blank && *has {
            fields.push(std::mem::take(current));
            *has = false;
        }
        while let Some(part) = parts.next() {
            if !part.is_empty() {
                current.push_str(part);
                *has = true;
            }
            if parts.peek().is_some() && *has {
                fields.push(std::mem::take(current));
                *has = false;
            }
        }
    }

    /// `$(…)`: run `text` in a subshell and take its output, trailing
    /// newlines removed.
    fn substitute(&mut self, text: &str, io: &mut Streams) -> String {
        if self.budget.depth == 0 {
            return String::new();
        }
        let Ok(program) = parse(text) else { return String::new() };
        self.budget.depth -= 1;
        let (cwd, vars) = (self.cwd.clone(), self.vars.clone());
        let mut inner = Streams::default();
        let _ = self.run_program(&program, &mut inner);
        self.cwd = cwd;
        self.vars = vars;
        self.budget.depth += 1;
        io.err.append(&mut inner.err);
        let mut out = String::from_utf8_lossy(&inner.out).into_owned();
        while out.ends_with('\n') {
            out.pop();
        }
        out
    }

    fn parameter(&mut self, expr: &ParameterExpr) -> String {
        let value_of = |sh: &Shell, p: &Parameter| -> Option<String> {
            match p {
                Parameter::Positional(0) => Some(sh.name_for_errors().to_string()),
                Parameter::Positional(n) => sh.positional.get(*n as usize - 1).cloned(),
                Parameter::Special(SpecialParameter::LastExitStatus) => Some(sh.last_status.to_string()),
                Parameter::Special(SpecialParameter::ProcessId) => Some(sh.pid.to_string()),
                Parameter::Special(SpecialParameter::PositionalParameterCount) => Some(sh.positional.len().to_string()),
                Parameter::Special(SpecialParameter::AllPositionalParameters { .. }) => Some(sh.positional.join(" ")),
                Parameter::Special(SpecialParameter::ShellName) => Some("-bash".into()),
                Parameter::Special(SpecialParameter::CurrentOptionFlags) => Some("himBHs".into()),
                Parameter::Special(SpecialParameter::LastBackgroundProcessId) => Some(String::new()),
                Parameter::Named(n) => sh.var(n).map(str::to_string),
                Parameter::NamedWithIndex { name, .. } => sh.var(name).map(str::to_string),
                Parameter::NamedWithAllIndices { name, .. } => sh.var(name).map(str::to_string),
            }
        };
        match expr {
            ParameterExpr::Parameter { parameter, .. } => value_of(self, parameter).unwrap_or_default(),
            ParameterExpr::UseDefaultValues { parameter, default_value, .. } => value_of(self, parameter)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default_value.clone().unwrap_or_default()),
            ParameterExpr::AssignDefaultValues { parameter, default_value, .. } => {
                match value_of(self, parameter).filter(|v| !v.is_empty()) {
                    Some(v) => v,
                    None => {
                        let v = default_value.clone().unwrap_or_default();
                        if let Parameter::Named(n) = parameter {
                            self.set_var(n, v.clone());
                        }
                        v
                    }
                }
            }
            ParameterExpr::UseAlternativeValue { parameter, alternative_value, .. } => {
                if value_of(self, parameter).is_some_and(|v| !v.is_empty()) {
                    alternative_value.clone().unwrap_or_default()
                } else {
                    String::new()
                }
            }
            ParameterExpr::ParameterLength { parameter, .. } => {
                value_of(self, parameter).map(|v| v.chars().count()).unwrap_or(0).to_string()
            }
            ParameterExpr::RemoveSmallestSuffixPattern { parameter, pattern, .. }
            | ParameterExpr::RemoveLargestSuffixPattern { parameter, pattern, .. } => {
                let v = value_of(self, parameter).unwrap_or_default();
                let largest = matches!(expr, ParameterExpr::RemoveLargestSuffixPattern { .. });
                trim_pattern(&v, pattern.as_deref().unwrap_or(""), false, largest)
            }
            ParameterExpr::RemoveSmallestPrefixPattern { parameter, pattern, .. }
            | ParameterExpr::RemoveLargestPrefixPattern { parameter, pattern, .. } => {
                let v = value_of(self, parameter).unwrap_or_default();
                let largest = matches!(expr, ParameterExpr::RemoveLargestPrefixPattern { .. });
                trim_pattern(&v, pattern.as_deref().unwrap_or(""), true, largest)
            }
            ParameterExpr::IndicateErrorIfNullOrUnset { parameter, .. } => {
                value_of(self, parameter).unwrap_or_default()
            }
            other => {
                // The rarer forms (substrings, case changes, replacements)
                // give the plain value: close enough for what bots type.
                let text = format!("{other:?}");
                let name = text.split("Named(\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
                self.var(name).unwrap_or("").to_string()
            }
        }
    }

    /// Integer arithmetic for `$(( … ))` and `(( … ))`.
    pub(crate) fn arithmetic(&mut self, text: &str) -> i64 {
        let Ok(expr) = brush_parser::arithmetic::parse(text) else { return 0 };
        self.eval_arith(&expr, 0)
    }

    fn eval_arith(&mut self, e: &ast::ArithmeticExpr, depth: u32) -> i64 {
        use ast::{ArithmeticExpr as E, ArithmeticTarget as T, UnaryOperator as U};
        if depth > 64 {
            return 0;
        }
        let target_value = |sh: &Shell, t: &T| match t {
            T::Variable(n) | T::ArrayElement(n, _) => sh.var(n).and_then(|v| v.trim().parse().ok()).unwrap_or(0i64),
        };
        match e {
            E::Literal(v) => *v,
            E::Reference(t) => target_value(self, t),
            E::UnaryOp(op, inner) => {
                let v = self.eval_arith(inner, depth + 1);
                match op {
                    U::UnaryPlus => v,
                    U::UnaryMinus => v.wrapping_neg(),
                    U::BitwiseNot => !v,
                    U::LogicalNot => i64::from(v == 0),
                }
            }
            E::BinaryOp(op, a, b) => {
                let (x, y) = (self.eval_arith(a, depth + 1), self.eval_arith(b, depth + 1));
                binary(op, x, y)
            }
            E::Conditional(c, a, b) => {
                if self.eval_arith(c, depth + 1) != 0 {
                    self.eval_arith(a, depth + 1)
                } else {
                    self.eval_arith(b, depth + 1)
                }
            }
            E::Assignment(t, v) => {
                let v = self.eval_arith(v, depth + 1);
                let (T::Variable(n) | T::ArrayElement(n, _)) = t;
                self.set_var(n, v.to_string());
                v
            }
            E::BinaryAssignment(op, t, v) => {
                let v = binary(op, target_value(self, t), self.eval_arith(v, depth + 1));
                let (T::Variable(n) | T::ArrayElement(n, _)) = t;
                self.set_var(n, v.to_string());
                v
            }
            E::UnaryAssignment(op, t) => {
                let old = target_value(self, t);
                let new = match op {
                    ast::UnaryAssignmentOperator::PrefixIncrement | ast::UnaryAssignmentOperator::PostfixIncrement => {
                        old.wrapping_add(1)
                    }
                    _ => old.wrapping_sub(1),
                };
                let (T::Variable(n) | T::ArrayElement(n, _)) = t;
                self.set_var(n, new.to_string());
                match op {
                    ast::UnaryAssignmentOperator::PostfixIncrement | ast::UnaryAssignmentOperator::PostfixDecrement => {
                        old
                    }
                    _ => new,
                }
            }
        }
    }

    /// `[[ … ]]`, through the same predicates as `test`.
    fn extended_test(&mut self, expr: &ast::ExtendedTestExpr) -> bool {
        use ast::ExtendedTestExpr as X;
        match expr {
            X::And(a, b) => self.extended_test(a) && self.extended_test(b),
            X::Or(a, b) => self.extended_test(a) || self.extended_test(b),
            X::Not(a) => !self.extended_test(a),
            X::Parenthesized(a) => self.extended_test(a),
            X::UnaryTest(predicate, word) => {
                let value = self.expand_word_joined(word, &mut Streams::default());
                let flag = commands::test::unary_flag(predicate);
                commands::test::unary(self, flag, &value)
            }
            X::BinaryTest(predicate, left, right) => {
                let mut scratch = Streams::default();
                let (l, r) =
                    (self.expand_word_joined(left, &mut scratch), self.expand_word_joined(right, &mut scratch));
                use ast::BinaryPredicate as P;
                match predicate {
                    // Inside [[ ]] the right side of == is a pattern.
                    P::StringExactlyMatchesPattern => glob_match(&r, &l),
                    P::StringDoesNotExactlyMatchPattern => !glob_match(&r, &l),
                    P::StringMatchesRegex => regex_lite_match(&r, &l),
                    P::StringContainsSubstring => l.contains(&r),
                    other => commands::test::binary(self, &l, commands::test::binary_op(other), &r),
                }
            }
        }
    }

    /// Paths matching a glob pattern, sorted; empty when none (the word
    /// then stays as typed, as bash does without nullglob).
    fn glob(&self, pattern: &str) -> Vec<String> {
        let absolute = pattern.starts_with('/');
        let base = if absolute { "/".to_string() } else { self.cwd.clone() };
        let mut candidates = vec![(base, String::new())];
        for part in pattern.split('/').filter(|p| !p.is_empty()) {
            let mut next = Vec::new();
            for (dir, shown) in &candidates {
                let join = |name: &str| {
                    if shown.is_empty() && !absolute {
                        name.to_string()
                    } else {
                        format!("{}/{name}", shown.trim_end_matches('/'))
                    }
                };
                if part.contains(['*', '?', '[']) {
                    for name in self.fs.list(dir).unwrap_or_default() {
                        if (!name.starts_with('.') || part.starts_with('.')) && glob_match(part, &name) {
                            next.push((normalize(dir, &name), join(&name)));
                        }
                    }
                } else {
                    let path = normalize(dir, part);
                    if self.fs.stat(&path).is_some() {
                        next.push((path, join(part)));
                    }
                }
            }
            candidates = next;
            if candidates.len() > 4096 {
                candidates.truncate(4096);
            }
        }
        let mut out: Vec<String> = candidates
            .into_iter()
            .map(|(_, shown)| if absolute && !shown.starts_with('/') { format!("/{shown}") } else { shown })
            .collect();
        out.sort();
        out
    }
}

fn binary(op: &ast::BinaryOperator, x: i64, y: i64) -> i64 {
    use ast::BinaryOperator as B;
    match op {
        B::Power => x.wrapping_pow(y.clamp(0, 63) as u32),
        B::Multiply => x.wrapping_mul(y),
        B::Divide => x.checked_div(y).unwrap_or(0),
        B::Modulo => x.checked_rem(y).unwrap_or(0),
        B::Comma => y,
        B::Add => x.wrapping_add(y),
        B::Subtract => x.wrapping_sub(y),
        B::ShiftLeft => x.wrapping_shl(y as u32),
        B::ShiftRight => x.wrapping_shr(y as u32),
        B::LessThan => i64::from(x < y),
        B::LessThanOrEqualTo => i64::from(x <= y),
        B::GreaterThan => i64::from(x > y),
        B::GreaterThanOrEqualTo => i64::from(x >= y),
        B::Equals => i64::from(x == y),
        B::NotEquals => i64::from(x != y),
        B::BitwiseAnd => x & y,
        B::BitwiseXor => x ^ y,
        B::BitwiseOr => x | y,
        B::LogicalAnd => i64::from(x != 0 && y != 0),
        B::LogicalOr => i64::from(x != 0 || y != 0),
    }
}

/// Shell pattern matching (`*`, `?`, `[…]`), iterative with one backtrack
/// point so a hostile pattern cannot make it exponential.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some(pi);
                    mark = ti;
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some(end) = p[pi + 1..].iter().position(|c| *c == ']').map(|e| pi + 1 + e) {
                        let set = &p[pi + 1..end];
                        let (negate, set) = match set.first() {
                            Some('!') | Some('^') => (true, &set[1..]),
                            _ => (false, set),
                        };
                        let mut hit = false;
                        let mut i = 0;
                        while i < set.len() {
                            if i + 2 < set.len() && set[i + 1] == '-' {
                                hit |= (set[i]..=set[i + 2]).contains(&t[ti]);
                                i += 3;
                            } else {
                                hit |= set[i] == t[ti];
                                i += 1;
                            }
                        }
                        if hit != negate {
                            pi = end + 1;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some(s) => {
                pi = s + 1;
                mark += 1;
                ti = mark;
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `=~` without a regex engine: a bounded substring/anchor match, which is
/// what scripts that check a version or a path use it for.
fn regex_lite_match(pattern: &str, text: &str) -> bool {
    let (start, pattern) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (end, pattern) = match pattern.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    match (start, end) {
        (true, true) => text == pattern,
        (true, false) => text.starts_with(pattern),
        (false, true) => text.ends_with(pattern),
        (false, false) => text.contains(pattern),
    }
}

/// `${v%pat}`, `${v%%pat}`, `${v#pat}`, `${v##pat}`.
fn trim_pattern(value: &str, pattern: &str, prefix: bool, largest: bool) -> String {
    let idx: Vec<usize> = value.char_indices().map(|(i, _)| i).chain([value.len()]).collect();
    let order: Vec<usize> = if prefix == largest { idx.iter().rev().copied().collect() } else { idx.clone() };
    for cut in order {
        let (matched, rest) = if prefix { (&value[..cut], &value[cut..]) } else { (&value[cut..], &value[..cut]) };
        if glob_match(pattern, matched) {
            return rest.to_string();
        }
    }
    value.to_string()
}

/// Where a command's streams go once it has run.
#[derive(Default)]
pub(crate) struct Redirects {
    /// (file path, append) for stdout.
    out: Option<(String, bool)>,
    err: Option<(String, bool)>,
    err_to_out: bool,
    out_to_err: bool,
}

impl Shell {
    fn plan_redirects(&mut self, list: &[ast::IoRedirect], io: &mut Streams) -> Result<Redirects, String> {
        let mut plan = Redirects::default();
        for r in list {
            match r {
                ast::IoRedirect::File(fd, kind, target) => {
                    let fd = fd.unwrap_or(match kind {
                        ast::IoFileRedirectKind::Read | ast::IoFileRedirectKind::DuplicateInput => 0,
                        _ => 1,
                    });
                    let target_text = match target {
                        ast::IoFileRedirectTarget::Filename(w) | ast::IoFileRedirectTarget::Duplicate(w) => {
                            self.expand_word_joined(w, io)
                        }
                        ast::IoFileRedirectTarget::Fd(n) => n.to_string(),
                        ast::IoFileRedirectTarget::ProcessSubstitution(..) => continue,
                    };
                    match kind {
                        ast::IoFileRedirectKind::Read | ast::IoFileRedirectKind::ReadAndWrite => {
                            let path = normalize(&self.cwd, &target_text);
                            match self.read_file(&path) {
                                Ok(bytes) => io.stdin = bytes,
                                Err(e) => return Err(format!("{target_text}: {}", e.message())),
                            }
                        }
                        ast::IoFileRedirectKind::DuplicateOutput | ast::IoFileRedirectKind::DuplicateInput => {
                            match (fd, target_text.as_str()) {
                                (2, "1") => plan.err_to_out = true,
                                (1, "2") => plan.out_to_err = true,
                                _ => {}
                            }
                        }
                        ast::IoFileRedirectKind::Write
                        | ast::IoFileRedirectKind::Append
                        | ast::IoFileRedirectKind::Clobber => {
                            let append = matches!(kind, ast::IoFileRedirectKind::Append);
                            let path = normalize(&self.cwd, &target_text);
                            // The file exists (truncated) even if the command fails.
                            if !append || self.fs.stat(&path).is_none() {
                                self.write_file(&path, Vec::new(), false)
                                    .map_err(|e| format!("{target_text}: {}", e.message()))?;
                            }
                            match fd {
                                2 => plan.err = Some((path, true)),
                                _ => plan.out = Some((path, true)),
                            }
                        }
                    }
                }
                ast::IoRedirect::OutputAndError(w, append) => {
                    let target = self.expand_word_joined(w, io);
                    let path = normalize(&self.cwd, &target);
                    if !append || self.fs.stat(&path).is_none() {
                        self.write_file(&path, Vec::new(), false).map_err(|e| format!("{target}: {}", e.message()))?;
                    }
                    plan.out = Some((path.clone(), true));
                    plan.err_to_out = true;
                }
                ast::IoRedirect::HereDocument(_, doc) => {
                    let text = if doc.requires_expansion {
                        self.expand_word_joined(
                            &ast::Word { value: format!("\"{}\"", doc.doc.value.replace('"', "\\\"")), loc: None },
                            io,
                        )
                    } else {
                        doc.doc.value.clone()
                    };
                    io.stdin = text.into_bytes();
                }
                ast::IoRedirect::HereString(_, w) => {
                    let mut text = self.expand_word_joined(w, io);
                    text.push('\n');
                    io.stdin = text.into_bytes();
                }
            }
        }
        Ok(plan)
    }

    fn finish_redirects(&mut self, plan: Redirects, mut inner: Streams, io: &mut Streams) {
        if plan.err_to_out {
            let mut err = std::mem::take(&mut inner.err);
            inner.out.append(&mut err);
        }
        if plan.out_to_err {
            let mut out = std::mem::take(&mut inner.out);
            inner.err.append(&mut out);
        }
        match plan.out {
            Some((path, _)) => {
                if let Err(e) = self.write_file(&path, inner.out, true) {
                    io.err
                        .extend_from_slice(format!("{}: {path}: {}\n", self.name_for_errors(), e.message()).as_bytes());
                }
            }
            None => io.out.append(&mut inner.out),
        }
        match plan.err {
            Some((path, _)) => {
                let _ = self.write_file(&path, inner.err, true);
            }
            None => io.err.append(&mut inner.err),
        }
    }

    /// Write (or append to) a file in the session filesystem, recording it
    /// as an upload when the attacker gave it content.
    pub(crate) fn write_file(&mut self, path: &str, bytes: Vec<u8>, append: bool) -> Result<(), super::fs::FsError> {
        use super::fs::FsError;
        if path.starts_with("/dev/") {
            return Ok(()); // /dev/null and friends swallow writes
        }
        if path.starts_with("/proc/") || path.starts_with("/sys/") {
            return Err(FsError::PermissionDenied);
        }
        let now = super::now();
        let existing = self.fs.stat(path).cloned();
        if let Some(n) = &existing {
            if n.is_dir() {
                return Err(FsError::IsADirectory);
            }
            if !self.may_write(n) {
                return Err(FsError::PermissionDenied);
            }
        }
        let target = self.fs.resolve(path).unwrap_or_else(|| path.to_string());
        let mut content = match (&existing, append) {
            (Some(Node { content: Content::File(b), .. }), true) => b.clone(),
            _ => Vec::new(),
        };
        let added = !bytes.is_empty();
        content.extend_from_slice(&bytes);
        let mut node = existing.unwrap_or_else(|| Node::file(Vec::new(), 0o644, self.uid, now));
        node.content = Content::File(content);
        node.size_hint = 0;
        node.mtime = now;
        self.fs.put(&target, node)?;
        if added {
            self.note_written(&target);
        }
        Ok(())
    }
}
