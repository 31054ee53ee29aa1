//! Diagnostics: located, actionable messages about bad input.
//!
//! A diagnostic keeps a byte span into its [`Source`]; rendering turns it
//! into `file:line:col` with the source line and a caret (annotate-snippets).

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use crate::source::{Source, Span};

/// One problem found in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What was wrong, as a lowercase fragment.
    pub message: String,
    /// Where, if the problem has a place in the file.
    pub span: Option<Span>,
    /// A short label under the caret: what was expected there.
    pub label: Option<String>,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            span: None,
            label: None,
            hint: None,
        }
    }

    pub fn at(mut self, span: Option<Span>) -> Self {
        self.span = span;
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Render against its source, in the style of a compiler error.
    pub fn render(&self, source: &Source, color: bool) -> String {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        // A name or value quoted from the input can be any length; a
        // message stays readable (a 200,000-character id is cut).
        let (message, label, hint) = (
            shorten_quoted(&self.message),
            self.label.as_deref().map(shorten_quoted),
            self.hint.as_deref().map(shorten_quoted),
        );
        let title = Level::ERROR.primary_title(&message);
        let mut group = match &self.span {
            Some(span) => {
                let span = clamp(span, source);
                let mut annotation = AnnotationKind::Primary.span(span);
                if let Some(label) = &label {
                    annotation = annotation.label(label);
                }
                title.element(
                    Snippet::source(source.text())
                        .path(source.name())
                        .fold(true)
                        .annotation(annotation),
                )
            }
            None => title.element(annotate_snippets::Origin::path(source.name())),
        };
        if self.span.is_none()
            && let Some(label) = &label
        {
            group = group.element(Level::NOTE.message(label));
        }
        if let Some(hint) = &hint {
            group = group.element(Level::HELP.message(hint));
        }
        let report: [Group<'_>; 1] = [group];
        renderer.render(&report).to_string()
    }
}

/// The longest `quoted` text a message shows whole.
const QUOTED_MAX: usize = 60;

/// `text` with every backquoted part longer than [`QUOTED_MAX`]
/// characters cut to its start and end around an ellipsis.
fn shorten_quoted(text: &str) -> String {
    let parts: Vec<&str> = text.split('`').collect();
    if parts.len() < 3 {
        return text.to_string();
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let n = part.chars().count();
            // Odd parts sit between a pair of backquotes.
            if i % 2 == 1 && i + 1 < parts.len() && n > QUOTED_MAX {
                let head: String = part.chars().take(40).collect();
                let tail: String = part.chars().skip(n - 12).collect();
                format!("{head}…{tail}")
            } else {
                (*part).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

/// Keep a span inside the text and on character boundaries, and make it at
/// least one character wide so the caret has something to point at.
fn clamp(span: &Span, source: &Source) -> Span {
    let text = source.text();
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = span.end.clamp(start, text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    if end == start {
        end = text[start..]
            .chars()
            .next()
            .filter(|c| *c != '\n')
            .map_or(start, |c| start + c.len_utf8());
    }
    start..end
}

/// Render every diagnostic of one file, each followed by a blank line.
pub fn render_all(source: &Source, diagnostics: &[Diagnostic], color: bool) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.render(source, color));
        out.push_str("\n\n");
    }
    out
}

/// "did you mean `x`?" when one candidate is close enough to the input.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Join names as "`a`, `b` or `c`".
pub fn one_of<S: AsRef<str>>(names: &[S]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{}`", n.as_ref())).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_quoted_name_is_cut_in_the_message_label_and_hint() {
        let long = "x".repeat(200_000);
        let src = Source::new("rb.yml", format!("id: {long}\n"));
        let d = Diagnostic::new(format!("duplicate step id `{long}`"))
            .at(Some(4..200_004))
            .label(format!("`{long}` again"))
            .hint(format!("rename `{long}`; ids are `short`"));
        let text = d.render(&src, false);
        assert!(text.len() < 2_000, "{} bytes", text.len());
        let cut = format!("`{}…{}`", "x".repeat(40), "x".repeat(12));
        assert!(text.contains(&format!("duplicate step id {cut}")), "{text}");
        assert!(
            text.contains(&format!("rename {cut}; ids are `short`")),
            "{text}"
        );
        assert_eq!(shorten_quoted("a `b` c"), "a `b` c");
        assert_eq!(shorten_quoted("an odd ` quote"), "an odd ` quote");
    }

    #[test]
    fn renders_location_caret_and_hint() {
        let src = Source::new("rb.yml", "settings:\n  statment_timeout: 5s\n");
        let d = Diagnostic::new("unknown key `statment_timeout` in settings")
            .at(Some(12..28))
            .label("not a setting")
            .hint("did you mean `statement_timeout`?");
        let text = d.render(&src, false);
        assert!(text.contains("rb.yml:2:3"), "{text}");
        assert!(text.contains("^^^^^^^^^^^^^^^^ not a setting"), "{text}");
        assert!(
            text.contains("help: did you mean `statement_timeout`?"),
            "{text}"
        );
    }

    #[test]
    fn suggestions_need_a_close_match() {
        let keys = ["statement_timeout", "lock_timeout", "application_name"];
        assert_eq!(
            did_you_mean("statment_timeout", keys),
            Some("statement_timeout")
        );
        assert_eq!(did_you_mean("zzz", keys), None);
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
