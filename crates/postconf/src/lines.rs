//! Physical lines of a Postfix-style configuration file, classified the way Postfix's
//! readllines(3) and postconf's editor see them, so that edits keep every other byte.

/// What a physical line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Empty, whitespace only, or a comment (first non-blank character `#`). Such lines
    /// never end a logical line and edits pass them through.
    Other,
    /// The first line of a logical line (starts with a non-blank character).
    Start,
    /// A continuation (starts with whitespace and has content).
    Continuation,
}

/// One physical line, with its line ending (the last line may have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The text including `\n` if there was one.
    pub raw: &'a str,
    /// The classification.
    pub kind: Kind,
    /// 1-based line number.
    pub number: usize,
}

impl<'a> Line<'a> {
    /// The content without surrounding whitespace.
    pub fn content(&self) -> &'a str {
        self.raw.trim_ascii()
    }
}

/// Splits text into classified physical lines; concatenating their `raw` gives the text back.
pub fn split(text: &str) -> Vec<Line<'_>> {
    text.split_inclusive('\n')
        .enumerate()
        .map(|(index, raw)| {
            let content = raw.trim_ascii();
            let kind = if content.is_empty() || content.starts_with('#') {
                Kind::Other
            } else if raw.starts_with(|c: char| c.is_ascii_whitespace()) {
                Kind::Continuation
            } else {
                Kind::Start
            };
            Line {
                raw,
                kind,
                number: index + 1,
            }
        })
        .collect()
}

/// A logical line: its start line and the indexes (into the [`split`] result) of its
/// continuation lines. Comment and blank lines between them belong to no entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logical {
    /// Index of the start line.
    pub start: usize,
    /// Indexes of the continuation lines, in order.
    pub continuations: Vec<usize>,
}

impl Logical {
    /// The logical line's text: start line and continuations, trimmed, joined with one
    /// space (as posthorn-config reads it).
    pub fn text(&self, lines: &[Line<'_>]) -> String {
        let mut text = lines[self.start].content().to_string();
        for &i in &self.continuations {
            text.push(' ');
            text.push_str(lines[i].content());
        }
        text
    }
}

/// Groups classified lines into logical lines. Continuations before the first start line
/// (which Postfix ignores with a warning) belong to none.
pub fn logical(lines: &[Line<'_>]) -> Vec<Logical> {
    let mut out: Vec<Logical> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match line.kind {
            Kind::Start => out.push(Logical {
                start: i,
                continuations: Vec::new(),
            }),
            Kind::Continuation => {
                if let Some(last) = out.last_mut() {
                    last.continuations.push(i);
                }
            }
            Kind::Other => {}
        }
    }
    out
}

/// For each line index, the index into `logical` of the entry it belongs to.
pub fn owners(lines: &[Line<'_>], logical: &[Logical]) -> Vec<Option<usize>> {
    let mut owner = vec![None; lines.len()];
    for (n, entry) in logical.iter().enumerate() {
        owner[entry.start] = Some(n);
        for &i in &entry.continuations {
            owner[i] = Some(n);
        }
    }
    owner
}

/// What happens to one logical line when a file is edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Written as it was.
    Keep,
    /// The start line becomes this text; continuation lines go.
    Replace(String),
    /// All its lines go.
    Remove,
    /// All its lines get a leading `#`.
    Comment,
}

/// Writes the edited file: every physical line, changed as its logical line's decision
/// says (`owners` from [`owners`], `decisions` indexed by logical line).
pub fn render(lines: &[Line<'_>], owners: &[Option<usize>], decisions: &[Decision]) -> String {
    let mut out = String::with_capacity(lines.iter().map(|l| l.raw.len()).sum::<usize>() + 128);
    for (i, line) in lines.iter().enumerate() {
        let Some(owner) = owners[i] else {
            out.push_str(line.raw);
            continue;
        };
        match &decisions[owner] {
            Decision::Keep => out.push_str(line.raw),
            Decision::Remove => {}
            Decision::Comment => {
                out.push('#');
                out.push_str(line.raw);
            }
            Decision::Replace(new) => {
                if line.kind == Kind::Start {
                    out.push_str(new);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_round_trip() {
        let text = "# c\na = 1\n  2\n\n  # in between\n\t3\nb=x\n  orphan?\nlast";
        let lines = split(text);
        let kinds: Vec<Kind> = lines.iter().map(|l| l.kind).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            vec![
                Other,
                Start,
                Continuation,
                Other,
                Other,
                Continuation,
                Start,
                Continuation,
                Start
            ]
        );
        let joined: String = lines.iter().map(|l| l.raw).collect();
        assert_eq!(joined, text);
        let logical = logical(&lines);
        assert_eq!(logical.len(), 3);
        assert_eq!(logical[0].text(&lines), "a = 1 2 3");
        assert_eq!(logical[1].text(&lines), "b=x orphan?");
        assert_eq!(logical[2].text(&lines), "last");
        let owners = owners(&lines, &logical);
        assert_eq!(owners[4], None);
        assert_eq!(owners[5], Some(0));
    }

    #[test]
    fn leading_continuations_belong_to_nothing() {
        let lines = split("  stray\nx = 1\n");
        let logical = logical(&lines);
        assert_eq!(logical.len(), 1);
        assert_eq!(logical[0].start, 1);
        assert_eq!(owners(&lines, &logical)[0], None);
    }
}
