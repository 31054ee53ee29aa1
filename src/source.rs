//! Source text and byte spans.
//!
//! Positions stay byte ranges inside the program; they become `line:col`
//! only when a diagnostic is printed.

use std::ops::Range;

/// A byte range into a [`Source`].
pub type Span = Range<usize>;

/// A named piece of text that diagnostics can point into.
#[derive(Debug, Clone)]
pub struct Source {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// The name shown in diagnostics (the path as the user gave it).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and 1-based column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.text[start..self.floor_char_boundary(offset)]
            .chars()
            .count()
            + 1;
        (line + 1, col)
    }

    /// Byte offset of a 1-based line and 1-based character column.
    pub fn offset(&self, line: usize, col: usize) -> Option<usize> {
        let start = *self.line_starts.get(line.checked_sub(1)?)?;
        let rest = &self.text[start..];
        let line_text = rest.split('\n').next().unwrap_or("");
        let mut chars = line_text.char_indices();
        let within = match col.checked_sub(1)? {
            0 => 0,
            n => chars.nth(n).map_or(line_text.len(), |(i, _)| i),
        };
        Some(start + within)
    }

    /// The byte range of the line holding `offset`, without its newline.
    pub fn line_span(&self, offset: usize) -> Span {
        let offset = offset.min(self.text.len());
        let start = self.line_starts[self.line_starts.partition_point(|&s| s <= offset) - 1];
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        start..end
    }

    fn floor_char_boundary(&self, mut offset: usize) -> usize {
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_round_trips_through_offset() {
        let src = Source::new("t.yml", "a: 1\nbé: 2\n\nc: 3");
        for offset in [0, 3, 5, 9, 12, 13, 14] {
            let (line, col) = src.line_col(offset);
            assert_eq!(src.offset(line, col), Some(offset), "offset {offset}");
        }
        assert_eq!(src.line_col(9), (2, 4));
        assert_eq!(src.line_span(6), 5..11);
    }

    #[test]
    fn offset_past_the_end_is_clamped_or_none() {
        let src = Source::new("t.yml", "ab");
        assert_eq!(src.line_col(99), (1, 3));
        assert_eq!(src.offset(5, 1), None);
    }
}
