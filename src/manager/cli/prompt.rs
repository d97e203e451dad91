//! Questions on the terminal.

use std::io::{self, BufRead, IsTerminal, Write};

/// Can we ask the user anything?
pub fn interactive() -> bool {
    io::stdin().is_terminal()
}

/// Print `question [default]: ` and read one line; `None` at end of input.
/// An empty answer gives `default`.
pub fn ask(
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    question: &str,
    default: &str,
) -> io::Result<Option<String>> {
    write!(output, "{question} [{default}]: ")?;
    output.flush()?;
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        writeln!(output)?;
        return Ok(None);
    }
    let answer = line.trim();
    Ok(Some(if answer.is_empty() {
        default.to_string()
    } else {
        answer.to_string()
    }))
}

/// Ask until `check` accepts the answer; `None` at end of input.
pub fn ask_valid<T>(
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    question: &str,
    default: &str,
    check: impl Fn(&str) -> Result<T, String>,
) -> io::Result<Option<T>> {
    loop {
        let Some(answer) = ask(input, output, question, default)? else {
            return Ok(None);
        };
        match check(&answer) {
            Ok(value) => return Ok(Some(value)),
            Err(allowed) => writeln!(output, "  '{answer}' is not allowed: {allowed}")?,
        }
    }
}

/// A yes/no question on stdin/stderr; default no.
pub fn confirm(question: &str) -> io::Result<bool> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut output = io::stderr();
    let answer = ask(&mut input, &mut output, question, "y/N")?.unwrap_or_default();
    Ok(matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_again_until_valid() {
        let mut input = io::Cursor::new("x\n\n");
        let mut output = Vec::new();
        let value = ask_valid(&mut input, &mut output, "n", "7", |s| {
            s.parse::<u8>().map_err(|_| "a number".to_string())
        })
        .unwrap();
        assert_eq!(value, Some(7));
        let text = String::from_utf8(output).unwrap();
        assert!(text.contains("'x' is not allowed: a number"), "{text}");
    }

    #[test]
    fn end_of_input_is_none() {
        let mut input = io::Cursor::new("");
        let mut output = Vec::new();
        assert_eq!(ask(&mut input, &mut output, "q", "d").unwrap(), None);
    }
}
