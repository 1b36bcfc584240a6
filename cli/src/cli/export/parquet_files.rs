//! Parquet files with the low-level writer of the `parquet` crate: a schema, typed column
//! writers, definition levels for the OPTIONAL columns, SNAPPY pages. Timestamps are INT64
//! `TIMESTAMP(MICROS, true)` (Spark refuses nanoseconds), strings BYTE_ARRAY `STRING`, ids INT64.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use commlog::Message;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::TypePtr;

use super::{Cleanup, EventRecord, Written, create_error, event_micros, io_error};
use crate::cli::CliError;

/// How much a [`PartitionedWriter`] holds: memory is about 100 bytes a buffered row.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Rows of one day buffered before they are written as a row group.
    pub(super) row_group_rows: usize,
    /// Rows buffered over all days before the largest day's rows are written out.
    pub(super) buffered_rows: usize,
    /// Files open at once. Beyond that the least recently written one is closed, and a
    /// later row of its day goes to the day's next part file (part-00001.parquet, ...).
    pub(super) open_files: usize,
}

pub(super) const LIMITS: Limits = Limits {
    row_group_rows: 128 * 1024,
    buffered_rows: 512 * 1024,
    open_files: 64,
};

/// Creates the (new) output directory, removed again unless the export succeeds.
pub(super) fn create_directory(out: &Path) -> Result<Cleanup, CliError> {
    std::fs::create_dir(out).map_err(|error| create_error(out, error))?;
    Ok(Cleanup::directory(out))
}

/// One column of a row group: values, and definition levels for an OPTIONAL column (1
/// where a value is, 0 for null; the values hold only the non-null ones).
pub(super) enum Column {
    Int64(Vec<i64>, Option<Vec<i16>>),
    Bytes(Vec<ByteArray>, Option<Vec<i16>>),
}

fn int64<R>(rows: &[R], value: impl Fn(&R) -> i64) -> Column {
    Column::Int64(rows.iter().map(value).collect(), None)
}

fn optional_int64<R>(rows: &[R], value: impl Fn(&R) -> Option<i64>) -> Column {
    let mut values = Vec::with_capacity(rows.len());
    let mut levels = Vec::with_capacity(rows.len());
    for row in rows {
        match value(row) {
            Some(value) => {
                values.push(value);
                levels.push(1);
            }
            None => levels.push(0),
        }
    }
    Column::Int64(values, Some(levels))
}

fn string<R>(rows: &[R], names: &Names, value: impl Fn(&R) -> u32) -> Column {
    Column::Bytes(
        rows.iter().map(|row| names.bytes(value(row))).collect(),
        None,
    )
}

fn optional_string<R>(rows: &[R], names: &Names, value: impl Fn(&R) -> Option<u32>) -> Column {
    let mut values = Vec::with_capacity(rows.len());
    let mut levels = Vec::with_capacity(rows.len());
    for row in rows {
        match value(row) {
            Some(id) => {
                values.push(names.bytes(id));
                levels.push(1);
            }
            None => levels.push(0),
        }
    }
    Column::Bytes(values, Some(levels))
}

fn optional_bytes<R>(rows: &[R], value: impl Fn(&R) -> Option<&ByteArray>) -> Column {
    let mut values = Vec::with_capacity(rows.len());
    let mut levels = Vec::with_capacity(rows.len());
    for row in rows {
        match value(row) {
            Some(bytes) => {
                values.push(bytes.clone());
                levels.push(1);
            }
            None => levels.push(0),
        }
    }
    Column::Bytes(values, Some(levels))
}

/// Strings stored once; rows refer to them by index (a row costs no allocation, and a
/// column clones a shared buffer per value).
#[derive(Default)]
pub(super) struct Names {
    ids: HashMap<String, u32>,
    bytes: Vec<ByteArray>,
}

impl Names {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.bytes.len()).expect("fewer than 2^32 names");
        self.ids.insert(name.to_string(), id);
        self.bytes.push(ByteArray::from(name.as_bytes().to_vec()));
        id
    }

    fn bytes(&self, id: u32) -> ByteArray {
        self.bytes[id as usize].clone()
    }
}

/// A row type: its schema and how its rows become columns.
pub(super) trait Row: Sized + Send {
    const SCHEMA: &'static str;
    fn columns(rows: &[Self], names: &Names) -> Vec<Column>;
}

fn user_id(user_id: u64) -> Result<i64, CliError> {
    i64::try_from(user_id).map_err(|_| {
        CliError::Usage(format!(
            "user id {user_id} does not fit Parquet's INT64 user_id column"
        ))
    })
}

fn micros(ms: i64) -> Result<i64, CliError> {
    ms.checked_mul(1000)
        .ok_or_else(|| CliError::Usage(format!("time {ms} ms overflows microseconds")))
}

fn external_id_bytes(external_id: &str) -> ByteArray {
    ByteArray::from(external_id.as_bytes().to_vec())
}

fn time_micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// What only some kinds have.
enum Detail {
    None,
    Cost(i64),
    Action(u32),
    Reason(u32),
    Outcome {
        amount: i64,
        outcome: u32,
    },
    Budget {
        scope: u32,
        month: u32,
        amount: i64,
        alert_percent: i64,
    },
}

/// An event row, compact while buffered.
pub(super) struct EventRow {
    seq: i64,
    message_id: Option<i64>,
    user_id: Option<i64>,
    time: i64,
    appended_at: i64,
    kind: u32,
    channel: Option<u32>,
    message_type: Option<u32>,
    detail: Detail,
    /// Unique to its message, so kept with the row rather than among the names.
    external_id: Option<ByteArray>,
}

impl EventRow {
    pub(super) fn new(names: &mut Names, record: &EventRecord<'_>) -> Result<Self, CliError> {
        let detail = match (record.cost_micros, record.amount_micros, record.outcome) {
            _ if let Some(budget) = record.budget => Detail::Budget {
                scope: names.intern(&budget.scope.to_string()),
                month: names.intern(&budget.month.to_string()),
                amount: budget.amount_micros,
                alert_percent: i64::from(budget.alert_percent),
            },
            (Some(cost), _, _) => Detail::Cost(cost),
            (None, Some(amount), Some(outcome)) => Detail::Outcome {
                amount,
                outcome: names.intern(outcome),
            },
            _ => match (record.action, record.reason) {
                (Some(action), _) => Detail::Action(names.intern(action)),
                (None, Some(reason)) => Detail::Reason(names.intern(reason)),
                (None, None) => Detail::None,
            },
        };
        Ok(EventRow {
            seq: i64::try_from(record.seq).expect("sequence numbers fit i64"),
            message_id: record
                .message_id
                .map(|id| i64::try_from(id).expect("message ids fit i64")),
            user_id: record.user_id.map(user_id).transpose()?,
            time: micros(record.time_ms)?,
            appended_at: micros(record.appended_ms)?,
            kind: names.intern(record.kind),
            channel: record.channel.map(|channel| names.intern(channel.as_str())),
            message_type: record.message_type.map(|name| names.intern(name)),
            detail,
            external_id: record.external_id.map(external_id_bytes),
        })
    }
}

impl Row for EventRow {
    const SCHEMA: &'static str = "
        message event {
            REQUIRED INT64 seq;
            REQUIRED BYTE_ARRAY kind (STRING);
            OPTIONAL INT64 message_id;
            OPTIONAL INT64 user_id;
            OPTIONAL BYTE_ARRAY channel (STRING);
            OPTIONAL BYTE_ARRAY message_type (STRING);
            REQUIRED INT64 time (TIMESTAMP(MICROS,true));
            REQUIRED INT64 appended_at (TIMESTAMP(MICROS,true));
            OPTIONAL INT64 cost_micros;
            OPTIONAL INT64 amount_micros;
            OPTIONAL BYTE_ARRAY action (STRING);
            OPTIONAL BYTE_ARRAY outcome (STRING);
            OPTIONAL BYTE_ARRAY reason (STRING);
            OPTIONAL BYTE_ARRAY budget_scope (STRING);
            OPTIONAL BYTE_ARRAY budget_month (STRING);
            OPTIONAL INT64 budget_micros;
            OPTIONAL INT64 alert_percent;
            OPTIONAL BYTE_ARRAY external_id (STRING);
        }";

    fn columns(rows: &[Self], names: &Names) -> Vec<Column> {
        vec![
            int64(rows, |row| row.seq),
            string(rows, names, |row| row.kind),
            optional_int64(rows, |row| row.message_id),
            optional_int64(rows, |row| row.user_id),
            optional_string(rows, names, |row| row.channel),
            optional_string(rows, names, |row| row.message_type),
            int64(rows, |row| row.time),
            int64(rows, |row| row.appended_at),
            optional_int64(rows, |row| match row.detail {
                Detail::Cost(cost) => Some(cost),
                _ => None,
            }),
            optional_int64(rows, |row| match row.detail {
                Detail::Outcome { amount, .. } => Some(amount),
                _ => None,
            }),
            optional_string(rows, names, |row| match row.detail {
                Detail::Action(action) => Some(action),
                _ => None,
            }),
            optional_string(rows, names, |row| match row.detail {
                Detail::Outcome { outcome, .. } => Some(outcome),
                _ => None,
            }),
            optional_string(rows, names, |row| match row.detail {
                Detail::Reason(reason) => Some(reason),
                _ => None,
            }),
            optional_string(rows, names, |row| match row.detail {
                Detail::Budget { scope, .. } => Some(scope),
                _ => None,
            }),
            optional_string(rows, names, |row| match row.detail {
                Detail::Budget { month, .. } => Some(month),
                _ => None,
            }),
            optional_int64(rows, |row| match row.detail {
                Detail::Budget { amount, .. } => Some(amount),
                _ => None,
            }),
            optional_int64(rows, |row| match row.detail {
                Detail::Budget { alert_percent, .. } => Some(alert_percent),
                _ => None,
            }),
            optional_bytes(rows, |row| row.external_id.as_ref()),
        ]
    }
}

/// A message row, compact while buffered.
pub(super) struct MessageRow {
    id: i64,
    user_id: i64,
    cost_micros: i64,
    sent_at: i64,
    delivered_at: Option<i64>,
    opened_at: Option<i64>,
    clicked_at: Option<i64>,
    failed_at: Option<i64>,
    channel: u32,
    message_type: u32,
    status: u32,
    action_taken: Option<u32>,
    failure_reason: Option<u32>,
    external_id: Option<ByteArray>,
}

impl MessageRow {
    pub(super) fn new(
        names: &mut Names,
        message: &Message,
        external_id: Option<&str>,
    ) -> Result<Self, CliError> {
        Ok(MessageRow {
            id: i64::try_from(message.id.0).expect("message ids fit i64"),
            user_id: user_id(message.user_id.0)?,
            cost_micros: event_micros(message.cost),
            sent_at: time_micros(message.sent_at),
            delivered_at: message.delivered_at.map(time_micros),
            opened_at: message.opened_at.map(time_micros),
            clicked_at: message.clicked_at.map(time_micros),
            failed_at: message.failed_at.map(time_micros),
            channel: names.intern(message.channel.as_str()),
            message_type: names.intern(&message.message_type),
            status: names.intern(message.status.as_str()),
            action_taken: message
                .action_taken
                .as_deref()
                .map(|name| names.intern(name)),
            failure_reason: message
                .failure_reason
                .as_deref()
                .map(|name| names.intern(name)),
            external_id: external_id.map(external_id_bytes),
        })
    }
}

impl Row for MessageRow {
    const SCHEMA: &'static str = "
        message message {
            REQUIRED INT64 id;
            REQUIRED INT64 user_id;
            REQUIRED BYTE_ARRAY channel (STRING);
            REQUIRED BYTE_ARRAY message_type (STRING);
            REQUIRED BYTE_ARRAY status (STRING);
            REQUIRED INT64 cost_micros;
            REQUIRED INT64 sent_at (TIMESTAMP(MICROS,true));
            OPTIONAL INT64 delivered_at (TIMESTAMP(MICROS,true));
            OPTIONAL INT64 opened_at (TIMESTAMP(MICROS,true));
            OPTIONAL INT64 clicked_at (TIMESTAMP(MICROS,true));
            OPTIONAL INT64 failed_at (TIMESTAMP(MICROS,true));
            OPTIONAL BYTE_ARRAY action_taken (STRING);
            OPTIONAL BYTE_ARRAY failure_reason (STRING);
            OPTIONAL BYTE_ARRAY external_id (STRING);
        }";

    fn columns(rows: &[Self], names: &Names) -> Vec<Column> {
        vec![
            int64(rows, |row| row.id),
            int64(rows, |row| row.user_id),
            string(rows, names, |row| row.channel),
            string(rows, names, |row| row.message_type),
            string(rows, names, |row| row.status),
            int64(rows, |row| row.cost_micros),
            int64(rows, |row| row.sent_at),
            optional_int64(rows, |row| row.delivered_at),
            optional_int64(rows, |row| row.opened_at),
            optional_int64(rows, |row| row.clicked_at),
            optional_int64(rows, |row| row.failed_at),
            optional_string(rows, names, |row| row.action_taken),
            optional_string(rows, names, |row| row.failure_reason),
            optional_bytes(rows, |row| row.external_id.as_ref()),
        ]
    }
}

/// One day's rows not yet written, and its open file.
struct Partition<R> {
    rows: Vec<R>,
    file: Option<(PathBuf, SerializedFileWriter<File>)>,
    next_part: u32,
    last_write: u64,
}

/// Rows into `ROOT/date=YYYY-MM-DD/part-NNNNN.parquet`, a row group at a time.
pub(super) struct PartitionedWriter<R: Row> {
    root: PathBuf,
    limits: Limits,
    schema: TypePtr,
    properties: WriterPropertiesPtr,
    pub(super) names: Names,
    partitions: BTreeMap<NaiveDate, Partition<R>>,
    buffered: usize,
    open_files: usize,
    writes: u64,
    files: u64,
    rows: u64,
}

impl<R: Row> PartitionedWriter<R> {
    pub(super) fn new(root: &Path, limits: Limits) -> Result<Self, CliError> {
        let schema = parse_message_type(R::SCHEMA).expect("the schemas above parse");
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        Ok(PartitionedWriter {
            root: root.to_path_buf(),
            limits,
            schema: Arc::new(schema),
            properties: Arc::new(properties),
            names: Names::default(),
            partitions: BTreeMap::new(),
            buffered: 0,
            open_files: 0,
            writes: 0,
            files: 0,
            rows: 0,
        })
    }

    /// Adds a row of day `date`.
    pub(super) fn push(&mut self, date: NaiveDate, row: R) -> Result<(), CliError> {
        let partition = self.partitions.entry(date).or_insert_with(|| Partition {
            rows: Vec::new(),
            file: None,
            next_part: 0,
            last_write: 0,
        });
        partition.rows.push(row);
        let full = partition.rows.len() >= self.limits.row_group_rows;
        self.buffered += 1;
        self.rows += 1;
        if full {
            self.write_out(date)?;
        }
        if self.buffered >= self.limits.buffered_rows {
            let largest = self
                .partitions
                .iter()
                .max_by_key(|(_, partition)| partition.rows.len())
                .map(|(date, _)| *date);
            if let Some(largest) = largest {
                self.write_out(largest)?;
            }
        }
        Ok(())
    }

    /// Writes the rows buffered for `date` as a row group, opening the day's file first if
    /// needed.
    fn write_out(&mut self, date: NaiveDate) -> Result<(), CliError> {
        if self.partitions[&date].file.is_none() {
            if self.open_files >= self.limits.open_files {
                let least_recent = self
                    .partitions
                    .iter()
                    .filter(|(_, partition)| partition.file.is_some())
                    .min_by_key(|(_, partition)| partition.last_write)
                    .map(|(date, _)| *date);
                if let Some(least_recent) = least_recent {
                    self.close_file(least_recent)?;
                }
            }
            self.open_file(date)?;
        }
        self.writes += 1;
        let partition = self.partitions.get_mut(&date).expect("a known day");
        partition.last_write = self.writes;
        let rows = std::mem::take(&mut partition.rows);
        self.buffered -= rows.len();
        let (path, file) = partition.file.as_mut().expect("opened above");
        write_row_group(file, R::columns(&rows, &self.names))
            .map_err(|error| parquet_error(path, error))
    }

    fn open_file(&mut self, date: NaiveDate) -> Result<(), CliError> {
        let partition = self.partitions.get_mut(&date).expect("a known day");
        let directory = self.root.join(format!("date={}", date.format("%Y-%m-%d")));
        std::fs::create_dir_all(&directory).map_err(|error| io_error(&directory, error))?;
        let path = directory.join(format!("part-{:05}.parquet", partition.next_part));
        let file = File::create_new(&path).map_err(|error| io_error(&path, error))?;
        let writer =
            SerializedFileWriter::new(file, Arc::clone(&self.schema), Arc::clone(&self.properties))
                .map_err(|error| parquet_error(&path, error))?;
        partition.file = Some((path, writer));
        partition.next_part += 1;
        self.open_files += 1;
        self.files += 1;
        Ok(())
    }

    /// Writes the day's buffered rows, then its file's footer.
    fn close_file(&mut self, date: NaiveDate) -> Result<(), CliError> {
        if !self.partitions[&date].rows.is_empty() {
            self.write_out(date)?;
        }
        let partition = self.partitions.get_mut(&date).expect("a known day");
        if let Some((path, writer)) = partition.file.take() {
            self.open_files -= 1;
            writer
                .close()
                .map_err(|error| parquet_error(&path, error))?;
        }
        Ok(())
    }

    /// Writes everything buffered and closes every file.
    pub(super) fn finish(mut self) -> Result<Written, CliError> {
        let dates: Vec<NaiveDate> = self.partitions.keys().copied().collect();
        for date in dates {
            self.close_file(date)?;
        }
        Ok(Written {
            rows: self.rows,
            files: Some(self.files),
            partitions: Some(self.partitions.len() as u64),
        })
    }
}

fn write_row_group(
    file: &mut SerializedFileWriter<File>,
    columns: Vec<Column>,
) -> Result<(), ParquetError> {
    let mut row_group = file.next_row_group()?;
    for column in columns {
        let mut writer = row_group
            .next_column()?
            .ok_or_else(|| ParquetError::General("more columns than the schema".into()))?;
        match &column {
            Column::Int64(values, levels) => {
                writer
                    .typed::<Int64Type>()
                    .write_batch(values, levels.as_deref(), None)?;
            }
            Column::Bytes(values, levels) => {
                writer
                    .typed::<ByteArrayType>()
                    .write_batch(values, levels.as_deref(), None)?;
            }
        }
        writer.close()?;
    }
    row_group.close()?;
    Ok(())
}

fn parquet_error(path: &Path, error: ParquetError) -> CliError {
    let source = match error {
        ParquetError::External(external) => match external.downcast::<std::io::Error>() {
            Ok(io) => *io,
            Err(other) => std::io::Error::other(other),
        },
        other => std::io::Error::other(other),
    };
    io_error(path, source)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    use super::*;

    /// Tiny limits: row groups, writing out the largest day, closing the least recently
    /// written file and continuing its day in a next part file all happen, and every row
    /// is written exactly once, in its day's partition.
    #[test]
    fn tiny_limits_split_days_into_row_groups_and_part_files() {
        // Many files open: a file per day, several row groups in each.
        let (files, row_groups) = write_and_read_back(Limits {
            row_group_rows: 3,
            buffered_rows: 1000,
            open_files: 100,
        });
        assert_eq!(files, 7);
        assert!(
            row_groups >= 200usize.div_ceil(3),
            "at most 3 rows a group: {row_groups}"
        );
        // Two files open: days continue in next part files.
        let (files, _) = write_and_read_back(Limits {
            row_group_rows: 3,
            buffered_rows: 5,
            open_files: 2,
        });
        assert!(files > 7, "{files}");
    }

    /// Writes 200 rows over 7 days, checks what reads back; gives files and row groups.
    fn write_and_read_back(limits: Limits) -> (u64, usize) {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("events");
        std::fs::create_dir(&out).unwrap();
        let mut writer = PartitionedWriter::<EventRow>::new(&out, limits).unwrap();
        let day_ms = 86_400_000;
        let start_ms = 1_735_689_600_000; // 2025-01-01
        let days = 7;
        let mut expected = BTreeMap::new();
        for seq in 1..=200u64 {
            // Days visited out of order, as late events do.
            let day = (seq * 3 % days) as i64;
            let time_ms = start_ms + day * day_ms + seq as i64;
            let outcome = seq % 5 == 0;
            let record = EventRecord {
                seq,
                kind: if outcome { "outcome" } else { "sent" },
                message_id: (!outcome).then_some(seq),
                user_id: Some(seq % 11 + 1),
                channel: (!outcome).then_some(commlog::Channel::Sms),
                message_type: (!outcome).then_some("low_balance"),
                time_ms,
                appended_ms: time_ms,
                cost_micros: (!outcome).then_some(50_000),
                amount_micros: outcome.then_some(-(seq as i64)),
                action: None,
                outcome: outcome.then_some("late_fee_avoided"),
                reason: None,
                budget: None,
                external_id: None,
            };
            let date = chrono::DateTime::from_timestamp_millis(time_ms)
                .unwrap()
                .date_naive();
            expected.insert(seq as i64, (date, record.cost_micros, record.amount_micros));
            let row = EventRow::new(&mut writer.names, &record).unwrap();
            writer.push(date, row).unwrap();
            assert!(writer.open_files <= limits.open_files);
            assert!(writer.buffered <= limits.buffered_rows);
        }
        let written = writer.finish().unwrap();
        assert_eq!(written.rows, 200);
        assert_eq!(written.partitions, Some(days));

        let mut seen = BTreeMap::new();
        let mut files = 0u64;
        let mut row_groups = 0;
        for partition in std::fs::read_dir(&out).unwrap() {
            let partition = partition.unwrap();
            let name = partition.file_name().into_string().unwrap();
            let date = NaiveDate::parse_from_str(&name["date=".len()..], "%Y-%m-%d").unwrap();
            for file in std::fs::read_dir(partition.path()).unwrap() {
                let file = file.unwrap();
                let file_name = file.file_name().into_string().unwrap();
                let part = file_name
                    .strip_prefix("part-")
                    .and_then(|rest| rest.strip_suffix(".parquet"))
                    .unwrap();
                assert!(
                    part.len() == 5 && part.parse::<u32>().is_ok(),
                    "{file_name}"
                );
                files += 1;
                let reader = SerializedFileReader::new(File::open(file.path()).unwrap()).unwrap();
                row_groups += reader.metadata().num_row_groups();
                for row in reader.get_row_iter(None).unwrap() {
                    let columns: BTreeMap<String, Field> =
                        row.unwrap().into_columns().into_iter().collect();
                    let long = |name: &str| match &columns[name] {
                        Field::Long(value) => Some(*value),
                        Field::Null => None,
                        other => panic!("{name}: {other:?}"),
                    };
                    let seq = long("seq").unwrap();
                    let previous =
                        seen.insert(seq, (date, long("cost_micros"), long("amount_micros")));
                    assert!(previous.is_none(), "seq {seq} written twice");
                }
            }
        }
        assert_eq!(seen, expected);
        assert_eq!(files, written.files.unwrap());
        (files, row_groups)
    }
}
