//! Reading the original service's CSV rows: columns by name, NULLs, times, decimals, names,
//! and every bad value reported as `file:line: column 'value': reason`.

use std::io::{self, Read};

use super::*;

/// One bad value of one row: `file:line: column 'value': reason`.
#[derive(Debug, Serialize)]
pub(super) struct Problem {
    pub(super) file: String,
    pub(super) line: u64,
    pub(super) column: String,
    pub(super) value: String,
    pub(super) reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {} '{}': {}",
            self.file, self.line, self.column, self.value, self.reason
        )
    }
}

/// Interned names (message types, actions, outcomes): a million rows hold a few distinct ones.
#[derive(Default)]
pub(super) struct Names {
    pub(super) ids: HashMap<String, u32>,
    pub(super) names: Vec<String>,
}

impl Names {
    pub(super) fn intern(&mut self, name: String) -> u32 {
        if let Some(id) = self.ids.get(&name) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct names");
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    pub(super) fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// A name from a file: lowercased, then checked as the store checks names.
    pub(super) fn parse(&mut self, text: &str) -> Result<u32, String> {
        let name = text.to_ascii_lowercase();
        if commlog::validate_name("name", &name).is_err() {
            return Err(NAME_RULE.to_string());
        }
        Ok(self.intern(name))
    }
}

/// A good `communication_metrics` row. Times are ms since the epoch, UTC.
pub(super) struct MessageRow {
    pub(super) old_id: i64,
    pub(super) user: u64,
    pub(super) channel: Channel,
    pub(super) message_type: u32,
    pub(super) status: Status,
    pub(super) cost: f64,
    pub(super) sent_ms: i64,
    pub(super) delivered_ms: Option<i64>,
    pub(super) opened_ms: Option<i64>,
    pub(super) clicked_ms: Option<i64>,
    /// The action and whether it is a click (its name contains "click").
    pub(super) action: Option<(u32, bool)>,
}

/// A good `financial_impact_metrics` row.
pub(super) struct OutcomeRow {
    pub(super) user: u64,
    pub(super) outcome: u32,
    pub(super) amount: f64,
    pub(super) at_ms: i64,
}

/// What reading one file gave.
pub(super) struct FileRead<T> {
    pub(super) rows: Vec<T>,
    pub(super) read: u64,
    pub(super) skipped: u64,
    pub(super) problems: Vec<Problem>,
}

/// A file's header: column name → position.
pub(super) struct Columns {
    pub(super) file: String,
    pub(super) positions: HashMap<String, usize>,
    pub(super) width: usize,
}

impl Columns {
    /// The header's columns; a repeated or missing one is an error.
    pub(super) fn new(
        path: &Path,
        headers: &csv::ByteRecord,
        required: &[&str],
    ) -> Result<Columns, CliError> {
        let file = path.display().to_string();
        let mut positions = HashMap::new();
        for (position, name) in headers.iter().enumerate() {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            if positions.insert(name.clone(), position).is_some() {
                return Err(CliError::Usage(format!(
                    "{file}:1: the header names column '{name}' twice"
                )));
            }
        }
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|column| !positions.contains_key(*column))
            .collect();
        if !missing.is_empty() {
            return Err(CliError::Usage(format!(
                "{file}:1: the header lacks {}; it needs {}",
                missing.join(", "),
                required.join(", ")
            )));
        }
        Ok(Columns {
            file,
            positions,
            width: headers.len(),
        })
    }
}

/// A field as read: NULL (its raw text: empty or `\N`), text, or bytes that are not UTF-8.
pub(super) enum Field<'a> {
    Null(&'a str),
    Text(&'a str),
    NotUtf8,
}

/// One record being checked: its fields by column name, and the problems found so far.
pub(super) struct Row<'a> {
    pub(super) columns: &'a Columns,
    pub(super) record: &'a csv::ByteRecord,
    pub(super) line: u64,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Row<'a> {
    pub(super) fn problem(&mut self, column: &str, value: &str, reason: impl Into<String>) {
        // Control characters (a newline in a quoted field) are escaped: one problem, one line.
        let mut shown = String::new();
        for character in value.chars().take(VALUE_CHARS_SHOWN) {
            if character.is_control() {
                shown.extend(character.escape_default());
            } else {
                shown.push(character);
            }
        }
        if value.chars().count() > VALUE_CHARS_SHOWN {
            shown.push('…');
        }
        self.problems.push(Problem {
            file: self.columns.file.clone(),
            line: self.line,
            column: column.to_string(),
            value: shown,
            reason: reason.into(),
        });
    }

    /// The value of a required field: NULL, or a value `parse` refuses, is a problem (`None`).
    pub(super) fn required<T>(
        &mut self,
        column: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.field(column) {
            Field::Text(text) => self.parsed(column, text, parse),
            Field::Null(raw) => {
                self.problem(column, raw, "must not be NULL");
                None
            }
            Field::NotUtf8 => None,
        }
    }

    /// The value of a nullable field: `Some(None)` when NULL, `None` when a problem.
    pub(super) fn optional<T>(
        &mut self,
        column: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.field(column) {
            Field::Text(text) => self.parsed(column, text, parse).map(Some),
            Field::Null(_) => Some(None),
            Field::NotUtf8 => None,
        }
    }

    pub(super) fn parsed<T>(
        &mut self,
        column: &str,
        text: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        parse(text)
            .map_err(|reason| self.problem(column, text, reason))
            .ok()
    }

    /// A follow-up time of a message sent at `sent_ms` (both as parsed), checked as the store
    /// checks it: more than the clock skew before the send is a problem (`None`).
    pub(super) fn after_sent(
        &mut self,
        column: &'static str,
        at_ms: Option<Option<i64>>,
        sent_ms: Option<i64>,
    ) -> Option<Option<i64>> {
        let (Some(Some(at)), Some(sent)) = (at_ms, sent_ms) else {
            return at_ms;
        };
        let Err(error) = commlog::validate_report_time(column, time_of_ms(at), time_of_ms(sent))
        else {
            return at_ms;
        };
        let Field::Text(text) = self.field(column) else {
            unreachable!("a time parsed from its text");
        };
        self.problem(column, text, store_rule(error));
        None
    }

    pub(super) fn field(&mut self, column: &str) -> Field<'a> {
        let bytes = self
            .columns
            .positions
            .get(column)
            .and_then(|position| self.record.get(*position))
            .unwrap_or_default();
        match std::str::from_utf8(bytes) {
            Ok(raw @ ("" | "\\N")) => Field::Null(raw),
            Ok(text) => Field::Text(text),
            Err(_) => {
                self.problem(column, &String::from_utf8_lossy(bytes), "not UTF-8");
                Field::NotUtf8
            }
        }
    }
}

/// The line each record of a CSV file starts on, from the record's byte offset: the csv
/// crate's own line count takes a record's position before the `\n` of a `\r\n` ending the
/// line before it and leaves empty lines out, so the lines are counted here, in one forward
/// pass over a second reading of the file.
struct LineCounter {
    bytes: io::Bytes<io::BufReader<File>>,
    /// Bytes read so far, and the line breaks (`\n`) among them.
    offset: u64,
    breaks: u64,
    /// The next byte after `offset`, if read ahead.
    peeked: Option<u8>,
}

impl LineCounter {
    fn new(path: &Path) -> io::Result<LineCounter> {
        Ok(LineCounter {
            bytes: io::BufReader::with_capacity(1 << 16, File::open(path)?).bytes(),
            offset: 0,
            breaks: 0,
            peeked: None,
        })
    }

    fn next_byte(&mut self) -> io::Result<Option<u8>> {
        match self.peeked.take() {
            Some(byte) => Ok(Some(byte)),
            None => self.bytes.next().transpose(),
        }
    }

    /// The 1-based line of the first byte at or after `byte` that ends no line: where a
    /// record at that offset starts, past the line endings and empty lines before it.
    /// Offsets come in increasing order.
    fn line_at(&mut self, byte: u64) -> io::Result<u64> {
        while let Some(next) = self.next_byte()? {
            if self.offset >= byte && next != b'\r' && next != b'\n' {
                self.peeked = Some(next);
                break;
            }
            self.offset += 1;
            self.breaks += u64::from(next == b'\n');
        }
        Ok(self.breaks + 1)
    }
}

/// Reads a file's rows, checking each with `check`, which returns a good row or records
/// problems.
pub(super) fn read_file<T>(
    path: &Path,
    required: &[&str],
    mut check: impl FnMut(&mut Row<'_>) -> Option<T>,
) -> Result<FileRead<T>, CliError> {
    let io = |error: csv::Error| csv_error(path, error);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(io)?;
    let headers = reader.byte_headers().map_err(io)?;
    let columns = Columns::new(path, headers, required)?;
    let mut result = FileRead {
        rows: Vec::new(),
        read: 0,
        skipped: 0,
        problems: Vec::new(),
    };
    let read_error = |source| {
        CliError::Store(commlog::Error::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut lines = LineCounter::new(path).map_err(read_error)?;
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record).map_err(io)? {
        result.read += 1;
        let start = record.position().map_or(0, csv::Position::byte);
        let line = lines.line_at(start).map_err(read_error)?;
        let mut row = Row {
            columns: &columns,
            record: &record,
            line,
            problems: Vec::new(),
        };
        let good = if record.len() == columns.width {
            check(&mut row)
        } else {
            row.problem(
                "row",
                &format!("{} fields", record.len()),
                format!("the header has {}", columns.width),
            );
            None
        };
        match good {
            Some(good) if row.problems.is_empty() => result.rows.push(good),
            _ => {
                debug_assert!(!row.problems.is_empty(), "a bad row says why");
                result.skipped += 1;
                result.problems.append(&mut row.problems);
            }
        }
    }
    Ok(result)
}

pub(super) fn csv_error(path: &Path, error: csv::Error) -> CliError {
    let message = format!("{}: {error}", path.display());
    match error.into_kind() {
        csv::ErrorKind::Io(source) => CliError::Store(commlog::Error::Io {
            path: path.to_path_buf(),
            source,
        }),
        _ => CliError::Usage(message),
    }
}

pub(super) fn read_messages(
    path: &Path,
    names: &mut Names,
) -> Result<FileRead<MessageRow>, CliError> {
    // Old id → the line it was first seen on.
    let mut seen: HashMap<i64, u64> = HashMap::new();
    read_file(path, &MESSAGE_COLUMNS, |row| {
        let line = row.line;
        let old_id = row.required("id", |text| {
            let id = text.parse::<i64>().map_err(|_| "not an integer")?;
            match seen.entry(id) {
                Entry::Occupied(first) => {
                    Err(format!("duplicate id (first on line {})", first.get()))
                }
                Entry::Vacant(entry) => {
                    entry.insert(line);
                    Ok(id)
                }
            }
        });
        let user = row.required("user_id", input::user_id);
        let message_type = row.required("message_type", |text| names.parse(text));
        let channel = row.required("channel", |text| {
            let channel = text.to_ascii_lowercase().parse::<Channel>();
            channel.map_err(|_| "must be sms, email, push or in_app".to_string())
        });
        let status = row.required("status", |text| {
            let status = text.to_ascii_lowercase().parse::<Status>();
            status.map_err(|_| "must be sent, delivered, opened, clicked or failed".to_string())
        });
        let cost = row.optional("cost", parse_cost);
        let sent_ms = row.required("sent_at", parse_time_field);
        let delivered_ms = row.optional("delivered_at", parse_time_field);
        let opened_ms = row.optional("opened_at", parse_time_field);
        let clicked_ms = row.optional("clicked_at", parse_time_field);
        let delivered_ms = row.after_sent("delivered_at", delivered_ms, sent_ms);
        let opened_ms = row.after_sent("opened_at", opened_ms, sent_ms);
        let clicked_ms = row.after_sent("clicked_at", clicked_ms, sent_ms);
        let action = row.optional("action_taken", |text| names.parse(text));
        let is_click = |action: u32| (action, names.name(action).contains("click"));
        Some(MessageRow {
            old_id: old_id?,
            user: user?,
            channel: channel?,
            message_type: message_type?,
            status: status?,
            cost: cost?.unwrap_or(0.0),
            sent_ms: sent_ms?,
            delivered_ms: delivered_ms?,
            opened_ms: opened_ms?,
            clicked_ms: clicked_ms?,
            action: action?.map(is_click),
        })
    })
}

pub(super) fn read_outcomes(
    path: &Path,
    names: &mut Names,
) -> Result<FileRead<OutcomeRow>, CliError> {
    // The optional uuid `id` column: a repeated id would count an outcome twice.
    let mut seen: HashMap<String, u64> = HashMap::new();
    read_file(path, &OUTCOME_COLUMNS, |row| {
        let line = row.line;
        let id = row.optional("id", |text| match seen.entry(text.to_ascii_lowercase()) {
            Entry::Occupied(first) => Err(format!("duplicate id (first on line {})", first.get())),
            Entry::Vacant(entry) => {
                entry.insert(line);
                Ok(())
            }
        });
        let user = row.required("user_id", input::user_id);
        let outcome = row.required("outcome_type", |text| names.parse(text));
        let amount = row.optional("outcome_value", |text| {
            let amount = parse_decimal(text).ok_or("not a decimal number")?;
            match Money::from_dollars(amount) {
                Ok(_) => Ok(amount),
                Err(_) => Err("must be within ±9e12 dollars".to_string()),
            }
        });
        let at_ms = row.required("outcome_date", parse_time_field);
        id?;
        Some(OutcomeRow {
            user: user?,
            outcome: outcome?,
            amount: amount?.unwrap_or(0.0),
            at_ms: at_ms?,
        })
    })
}

/// The service's Float cost in dollars: a finite number, not negative, within the store's range.
pub(super) fn parse_cost(text: &str) -> Result<f64, String> {
    let cost = text.parse::<f64>().map_err(|_| "not a number")?;
    if !cost.is_finite() {
        return Err("must be a finite number".to_string());
    }
    if cost < 0.0 {
        return Err("must not be negative".to_string());
    }
    Money::from_dollars(cost).map_err(|_| "must be at most 9e12 dollars")?;
    Ok(cost)
}

/// A time in the format above that the store takes: not before 1970, at most a day after the
/// clock.
pub(super) fn parse_time_field(text: &str) -> Result<i64, String> {
    let at_ms =
        commlog::parse_time_ms(text).ok_or_else(|| format!("not a time ({TIME_FORMAT})"))?;
    commlog::validate_time("time", time_of_ms(at_ms)).map_err(store_rule)?;
    Ok(at_ms)
}

/// A parsed time (years 0 to 9999: within chrono's range).
pub(super) fn time_of_ms(at_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at_ms).expect("parsed times fit")
}

/// The rule a store error names, as a bad row's reason.
fn store_rule(error: commlog::Error) -> String {
    match error {
        commlog::Error::InvalidInput { rule, .. } => rule.into_owned(),
        other => other.to_string(),
    }
}

/// A decimal as SQL's Numeric prints it: `[+-]digits[.digits]` (or `.digits`), as the f64
/// nearest to it (whose shortest form is the decimal itself up to 15 significant digits, so
/// the store converts it to micro-dollars exactly).
pub(super) fn parse_decimal(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    text.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_as_numeric_prints_them() {
        assert_eq!(parse_decimal("25.00"), Some(25.0));
        assert_eq!(parse_decimal("-12.34"), Some(-12.34));
        assert_eq!(parse_decimal("+7"), Some(7.0));
        assert_eq!(parse_decimal(".5"), Some(0.5));
        for bad in ["", ".", "-", "1e3", "12,50", "inf", "NaN", "1.2.3", "$5"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }
}
