//! Rendering for people and for scripts: aligned tables (coloured only on a
//! terminal, laid out by `comfy-table`), pretty JSON of the API answers,
//! and short time texts.

use serde::Serialize;
use std::io::{IsTerminal, Write};

/// A terminal colour for one table cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Green,
    Yellow,
    Red,
    Gray,
}

impl Colour {
    fn ansi(self) -> &'static str {
        match self {
            Colour::Green => "\x1b[32m",
            Colour::Yellow => "\x1b[33m",
            Colour::Red => "\x1b[31m",
            Colour::Gray => "\x1b[90m",
        }
    }
}

/// Returns `text` wrapped in the colour's ANSI codes.
pub fn paint(text: &str, colour: Colour) -> String {
    format!("{}{text}\x1b[0m", colour.ansi())
}

/// One table cell: its text and, optionally, a colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub colour: Option<Colour>,
}

impl Cell {
    pub fn coloured(text: impl Into<String>, colour: Colour) -> Cell {
        Cell {
            text: text.into(),
            colour: Some(colour),
        }
    }

    /// Returns the text, in its colour when `colour` is on.
    pub fn render(&self, colour: bool) -> String {
        match self.colour.filter(|_| colour) {
            Some(c) => paint(&self.text, c),
            None => self.text.clone(),
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, colour: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::from(text.to_string())
    }
}

/// A table with a header row; columns are as wide as their widest cell,
/// two spaces apart, with no borders (laid out by `comfy-table`).
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// Renders the table; `colour` adds ANSI colours to coloured cells.
    /// Widths count what is seen, not colour codes, so colours never shift
    /// columns, and no line ends in spaces.
    pub fn render(&self, colour: bool) -> String {
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::NOTHING)
            .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
            .set_header(self.headers.clone());
        for row in &self.rows {
            table.add_row(row.iter().map(|cell| cell.render(colour)));
        }
        let columns = table.column_count();
        for (i, column) in table.column_iter_mut().enumerate() {
            let gap = if i + 1 < columns { COLUMN_GAP } else { 0 };
            column.set_padding((0, gap));
        }
        table
            .lines()
            .map(|line| format!("{}\n", line.trim_end()))
            .collect()
    }

    /// Prints the table to stdout, coloured when stdout is a terminal.
    pub fn print(&self) {
        print!("{}", self.render(colour_stdout()));
    }
}

/// Spaces between two columns.
const COLUMN_GAP: u16 = 2;

/// Whether stdout gets colours: a terminal, and `NO_COLOR` unset.
pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Prints `value` as pretty JSON with a trailing newline.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()?;
    Ok(())
}

/// Returns "key: value" lines with the keys aligned, for `show` verbs.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        out.push_str(&format!(
            "{:<width$}  {value}\n",
            format!("{key}:"),
            width = width + 1
        ));
    }
    out
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Returns "5s ago", "3m ago", "2h ago", "4d ago" (a future time counts as now).
pub fn ago(then_ms: u64, now_ms: u64) -> String {
    format!("{} ago", span(now_ms.saturating_sub(then_ms)))
}

/// Returns a short span: "800ms", "5s", "3m", "2h", "4d".
pub fn span(ms: u64) -> String {
    let secs = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m", secs / 60)
    } else if secs < 86_400 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}d", secs / 86_400)
    }
}

/// Returns `-` for an absent value, so table cells are never blank.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_without_trailing_spaces() {
        let mut table = Table::new(&["NAME", "STATUS", "MEMBERS"]);
        table.row(vec![
            "demo".into(),
            Cell::coloured("green", Colour::Green),
            "3".into(),
        ]);
        table.row(vec!["a-long-name".into(), "gray".into(), "10".into()]);
        assert_eq!(
            table.render(false),
            "NAME         STATUS  MEMBERS\n\
             demo         green   3\n\
             a-long-name  gray    10\n"
        );
    }

    #[test]
    fn colours_do_not_shift_columns() {
        let mut table = Table::new(&["S", "N"]);
        table.row(vec![Cell::coloured("red", Colour::Red), "1".into()]);
        table.row(vec!["yellow".into(), "2".into()]);
        let text = table.render(true);
        assert_eq!(text, "S       N\n\x1b[31mred\x1b[0m     1\nyellow  2\n");
    }

    #[test]
    fn last_column_is_not_padded_and_wide_chars_count_once() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["é".into(), "".into()]);
        assert_eq!(table.render(false), "A  B\né\n");
    }

    #[test]
    fn fields_align_keys() {
        let text = fields(&[("name", "web1".into()), ("generation", "3".into())]);
        assert_eq!(text, "name:        web1\ngeneration:  3\n");
    }

    #[test]
    fn time_texts() {
        assert_eq!(ago(1_000, 6_500), "5s ago");
        assert_eq!(ago(10_000, 1_000), "0ms ago");
        assert_eq!(span(125_000), "2m");
        assert_eq!(span(7_200_000), "2h");
        assert_eq!(span(3 * 86_400_000), "3d");
        assert_eq!(or_dash(None::<u32>), "-");
        assert_eq!(or_dash(Some(7)), "7");
    }
}
