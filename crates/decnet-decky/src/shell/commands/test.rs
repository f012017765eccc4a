//! `test` / `[` and the predicates `[[ … ]]` shares with them.

use brush_parser::ast::{BinaryPredicate, UnaryPredicate};

use super::Output;
use crate::shell::fs::{normalize, Content};
use crate::shell::Shell;

pub fn test(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let mut args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    if argv[0] == "[" {
        if args.last() != Some(&"]") {
            return Output::fail(2, "-bash: [: missing `]'\n");
        }
        args.pop();
    }
    Output::status(i32::from(!eval(sh, &args)))
}

fn eval(sh: &Shell, args: &[&str]) -> bool {
    if let Some(i) = args.iter().position(|a| *a == "-o") {
        return eval(sh, &args[..i]) || eval(sh, &args[i + 1..]);
    }
    if let Some(i) = args.iter().position(|a| *a == "-a") {
        if i > 0 {
            return eval(sh, &args[..i]) && eval(sh, &args[i + 1..]);
        }
    }
    match args {
        [] => false,
        ["!", rest @ ..] => !eval(sh, rest),
        [s] => !s.is_empty(),
        [flag, value] => unary(sh, flag, value),
        [l, op, r] => binary(sh, l, op, r),
        _ => false,
    }
}

/// A unary test (`-f file`, `-z str`, …).
pub fn unary(sh: &Shell, flag: &str, value: &str) -> bool {
    let node = || sh.fs.stat(&normalize(&sh.cwd, value));
    match flag {
        "-e" | "-a" => node().is_some(),
        "-f" => node().is_some_and(|n| matches!(n.content, Content::File(_) | Content::Dynamic(_))),
        "-d" => node().is_some_and(|n| n.is_dir()),
        "-L" | "-h" => {
            sh.fs.lstat(&normalize(&sh.cwd, value)).is_some_and(|n| matches!(n.content, Content::Symlink(_)))
        }
        "-c" => node().is_some_and(|n| matches!(n.content, Content::Device(_))),
        "-s" => node().is_some_and(|n| n.size() > 0),
        "-r" => node().is_some_and(|n| sh.may_read(n)),
        "-w" => node().is_some_and(|n| sh.may_write(n)),
        "-x" => node().is_some_and(|n| n.mode & 0o111 != 0),
        "-z" => value.is_empty(),
        "-n" => !value.is_empty(),
        "-t" => sh.interactive,
        _ => false,
    }
}

pub fn binary(_: &Shell, l: &str, op: &str, r: &str) -> bool {
    let (a, b) = (l.trim().parse::<i64>().unwrap_or(0), r.trim().parse::<i64>().unwrap_or(0));
    match op {
        "=" | "==" => l == r,
        "!=" => l != r,
        "<" => l < r,
        ">" => l > r,
        "-eq" => a == b,
        "-ne" => a != b,
        "-lt" => a < b,
        "-le" => a <= b,
        "-gt" => a > b,
        "-ge" => a >= b,
        _ => false,
    }
}

pub fn unary_flag(p: &UnaryPredicate) -> &'static str {
    use UnaryPredicate as U;
    match p {
        U::FileExists => "-e",
        U::FileExistsAndIsDir => "-d",
        U::FileExistsAndIsRegularFile => "-f",
        U::FileExistsAndIsSymlink => "-L",
        U::FileExistsAndIsCharSpecialFile => "-c",
        U::FileExistsAndIsNotZeroLength => "-s",
        U::FileExistsAndIsReadable => "-r",
        U::FileExistsAndIsWritable => "-w",
        U::FileExistsAndIsExecutable => "-x",
        U::StringHasZeroLength => "-z",
        U::StringHasNonZeroLength => "-n",
        U::FdIsOpenTerminal => "-t",
        _ => "-e",
    }
}

pub fn binary_op(p: &BinaryPredicate) -> &'static str {
    use BinaryPredicate as B;
    match p {
        B::StringExactlyMatchesString => "==",
        B::StringDoesNotExactlyMatchString => "!=",
        B::LeftSortsBeforeRight => "<",
        B::LeftSortsAfterRight => ">",
        B::ArithmeticEqualTo => "-eq",
        B::ArithmeticNotEqualTo => "-ne",
        B::ArithmeticLessThan => "-lt",
        B::ArithmeticLessThanOrEqualTo => "-le",
        B::ArithmeticGreaterThan => "-gt",
        B::ArithmeticGreaterThanOrEqualTo => "-ge",
        _ => "==",
    }
}
