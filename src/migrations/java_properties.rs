//! Java properties files (`flyway.conf`, `liquibase.properties`, a Spring
//! application's `application.properties`), read as Java reads them.

/// A Java properties file's `(key, value, line)`s: `key=value`, `key:
/// value` or `key value`; `#` and `!` begin a comment; a line that ends
/// in `\` goes on in the next.
pub(super) fn properties(text: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let mut line = line.trim_start().to_string();
        if line.is_empty() || line.starts_with(['#', '!']) {
            continue;
        }
        while line.ends_with('\\') {
            line.pop();
            match lines.next() {
                Some((_, more)) => line.push_str(more.trim_start()),
                None => break,
            }
        }
        let end = line
            .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
            .unwrap_or(line.len());
        let key = line[..end].to_string();
        let rest = line[end..].trim_start();
        let value = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim();
        out.push((key, value.to_string(), i + 1));
    }
    out
}
