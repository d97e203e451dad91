//! A line-preserving INI document, read the way the 2016 tool's `inih`
//! read config.ini: `[section]`, `key = value` (or `key: value`), comments
//! starting with `;` or `#`, inline comments after whitespace + `;`, and the
//! last assignment of a key winning.
//!
//! Unlike a map-based parser, every line the user wrote (comments, blank
//! lines, unknown sections and keys, their order) is kept, and `set` only
//! touches the one line it changes, so rewriting a file loses nothing.
//! (rust-ini drops comments, which is why this is our own.)

/// Characters that start a whole-line comment.
const COMMENT_PREFIXES: [char; 2] = [';', '#'];
/// Start of an inline comment when preceded by whitespace (inih's default).
const INLINE_COMMENT: char = ';';

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("line {line}: '{text}' is neither a [section], a key = value pair nor a comment")]
    Syntax { line: usize, text: String },
    #[error("line {line}: section header '{text}' has no closing ']'")]
    UnclosedSection { line: usize, text: String },
    #[error("line {line}: '{text}' has an empty key")]
    EmptyKey { line: usize, text: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// Blank line or comment: kept verbatim.
    Other,
    Section(String),
    Entry {
        key: String,
        value: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    /// The text as the file had it (without the '\n').
    raw: String,
    kind: Kind,
    /// The section the line belongs to ("" before the first header).
    section: String,
}

/// A parsed INI file that can be written back unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Document {
    lines: Vec<Line>,
    /// Whether the text ended with a newline.
    trailing_newline: bool,
}

impl Document {
    pub fn parse(text: &str) -> Result<Document, Error> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let trailing_newline = text.is_empty() || text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        let mut lines = Vec::new();
        let mut section = String::new();
        if !text.is_empty() {
            for (index, raw) in body.split('\n').enumerate() {
                let kind = parse_line(raw, index + 1)?;
                if let Kind::Section(name) = &kind {
                    section = name.clone();
                }
                lines.push(Line {
                    raw: raw.to_string(),
                    kind,
                    section: section.clone(),
                });
            }
        }
        Ok(Document {
            lines,
            trailing_newline,
        })
    }

    /// The value of `key` in `section` (the last assignment wins).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.lines.iter().rev().find_map(|line| match &line.kind {
            Kind::Entry { key: k, value } if line.section == section && k == key => {
                Some(value.as_str())
            }
            _ => None,
        })
    }

    /// Set `key` in `section`: rewrites the line of its last assignment, or
    /// adds a line at the end of the section, or adds the section.
    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        let new_raw = if value.is_empty() {
            format!("{key} =")
        } else {
            format!("{key} = {}", quote_if_needed(value))
        };
        let entry = Kind::Entry {
            key: key.to_string(),
            value: value.to_string(),
        };
        let existing = self.lines.iter().rposition(
            |line| matches!(&line.kind, Kind::Entry { key: k, .. } if line.section == section && k == key),
        );
        if let Some(index) = existing {
            self.lines[index].raw = new_raw;
            self.lines[index].kind = entry;
            return;
        }
        let line = Line {
            raw: new_raw,
            kind: entry,
            section: section.to_string(),
        };
        // After the last entry (or the header) of the section's last
        // occurrence, so comments introducing the next section stay with it.
        let last_in_section = self
            .lines
            .iter()
            .rposition(|l| l.section == section && l.kind != Kind::Other);
        if section.is_empty() {
            let index = last_in_section.map_or(0, |i| i + 1);
            self.lines.insert(index, line);
        } else if let Some(index) = last_in_section.filter(|_| self.has_header(section)) {
            self.lines.insert(index + 1, line);
        } else {
            if self.lines.last().is_some_and(|l| !l.raw.trim().is_empty()) {
                self.push_other("");
            }
            self.lines.push(Line {
                raw: format!("[{section}]"),
                kind: Kind::Section(section.to_string()),
                section: section.to_string(),
            });
            self.lines.push(line);
        }
    }

    fn has_header(&self, section: &str) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(&l.kind, Kind::Section(name) if name == section))
    }

    fn push_other(&mut self, raw: &str) {
        let section = self
            .lines
            .last()
            .map(|l| l.section.clone())
            .unwrap_or_default();
        self.lines.push(Line {
            raw: raw.to_string(),
            kind: Kind::Other,
            section,
        });
    }

    /// Every `(section, key)` assigned in the file, in file order, once each.
    pub fn keys(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for line in &self.lines {
            if let Kind::Entry { key, .. } = &line.kind {
                let pair = (line.section.clone(), key.clone());
                if !out.contains(&pair) {
                    out.push(pair);
                }
            }
        }
        out
    }

    /// Every section header, in file order, once each.
    pub fn sections(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for line in &self.lines {
            if let Kind::Section(name) = &line.kind
                && !out.contains(name)
            {
                out.push(name.clone());
            }
        }
        out
    }
}

impl std::fmt::Display for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, line) in self.lines.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&line.raw)?;
        }
        if self.trailing_newline && !self.lines.is_empty() {
            f.write_str("\n")?;
        }
        Ok(())
    }
}

fn parse_line(raw: &str, number: usize) -> Result<Kind, Error> {
    let line = raw.trim_end_matches('\r').trim();
    if line.is_empty() || line.starts_with(COMMENT_PREFIXES) {
        return Ok(Kind::Other);
    }
    if let Some(rest) = line.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(Error::UnclosedSection {
                line: number,
                text: line.to_string(),
            });
        };
        let after = strip_inline_comment(&rest[end + 1..]).trim();
        if !after.is_empty() {
            return Err(Error::Syntax {
                line: number,
                text: line.to_string(),
            });
        }
        return Ok(Kind::Section(rest[..end].trim().to_string()));
    }
    let Some(split) = line.find(['=', ':']) else {
        return Err(Error::Syntax {
            line: number,
            text: line.to_string(),
        });
    };
    let key = line[..split].trim();
    if key.is_empty() {
        return Err(Error::EmptyKey {
            line: number,
            text: line.to_string(),
        });
    }
    let value = unquote(strip_inline_comment(&line[split + 1..]).trim());
    Ok(Kind::Entry {
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// Cut a `;` comment that follows whitespace, outside double quotes.
fn strip_inline_comment(text: &str) -> &str {
    let mut in_quotes = false;
    let mut previous_space = true;
    for (index, c) in text.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            INLINE_COMMENT if !in_quotes && previous_space => return &text[..index],
            _ => {}
        }
        previous_space = c.is_whitespace();
    }
    text
}

/// One level of surrounding double quotes is not part of the value.
fn unquote(value: &str) -> &str {
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

fn quote_if_needed(value: &str) -> String {
    let needs = value != value.trim()
        || value.contains(INLINE_COMMENT)
        || value.starts_with(COMMENT_PREFIXES)
        || (value.starts_with('"') && value.ends_with('"') && value.len() >= 2);
    if needs {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "; my vm\n[machine]\nname = Foo\ntype: linux ; inline\n\n# other\n[custom]\nx = 1\n[boot]\noptions = \"console=ttyS0 quiet\"\n";

    #[test]
    fn reads_inih_style() {
        let doc = Document::parse(SAMPLE).unwrap();
        assert_eq!(doc.get("machine", "name"), Some("Foo"));
        assert_eq!(doc.get("machine", "type"), Some("linux"));
        assert_eq!(doc.get("custom", "x"), Some("1"));
        assert_eq!(doc.get("boot", "options"), Some("console=ttyS0 quiet"));
        assert_eq!(doc.get("boot", "kernel"), None);
        assert_eq!(doc.sections(), vec!["machine", "custom", "boot"]);
    }

    #[test]
    fn writes_back_byte_for_byte() {
        for text in [
            SAMPLE,
            "",
            "[a]\r\nk = v\r\n",
            "[a]\nk=v",
            "\u{feff}[a]\nk=v\n",
        ] {
            let doc = Document::parse(text).unwrap();
            let expected = text.strip_prefix('\u{feff}').unwrap_or(text);
            assert_eq!(doc.to_string(), expected);
        }
    }

    #[test]
    fn last_assignment_wins_and_set_rewrites_it() {
        let mut doc = Document::parse("[m]\nk = 1\nk = 2\n").unwrap();
        assert_eq!(doc.get("m", "k"), Some("2"));
        doc.set("m", "k", "3");
        assert_eq!(doc.to_string(), "[m]\nk = 1\nk = 3\n");
    }

    #[test]
    fn set_adds_keys_and_sections_in_place() {
        let mut doc = Document::parse("; c\n[a]\nx = 1\n\n[b]\ny = 2\n").unwrap();
        doc.set("a", "z", "new");
        doc.set("c", "w", "v");
        assert_eq!(
            doc.to_string(),
            "; c\n[a]\nx = 1\nz = new\n\n[b]\ny = 2\n\n[c]\nw = v\n"
        );
        let mut empty = Document::parse("").unwrap();
        empty.set("s", "k", " spaced ");
        assert_eq!(empty.to_string(), "[s]\nk = \" spaced \"\n");
        let reread = Document::parse(&empty.to_string()).unwrap();
        assert_eq!(reread.get("s", "k"), Some(" spaced "));
    }

    #[test]
    fn rejects_garbage_with_line_numbers() {
        assert_eq!(
            Document::parse("[a]\nnonsense\n"),
            Err(Error::Syntax {
                line: 2,
                text: "nonsense".into()
            })
        );
        assert!(matches!(
            Document::parse("[a\n"),
            Err(Error::UnclosedSection { line: 1, .. })
        ));
        assert!(matches!(
            Document::parse("= v\n"),
            Err(Error::EmptyKey { line: 1, .. })
        ));
    }

    #[test]
    fn semicolon_inside_a_word_is_not_a_comment() {
        let doc = Document::parse("[a]\nk = a;b ; c\n").unwrap();
        assert_eq!(doc.get("a", "k"), Some("a;b"));
    }
}
