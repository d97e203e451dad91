//! The control-socket protocol: JSON lines, versioned (documented in the README, "Control protocol").
//!
//! A request is one line `{"v":1,"cmd":"status"}`; the answer is one line
//! `{"v":1,"ok":true,"result":{...}}` or
//! `{"v":1,"ok":false,"error":{"code":"...","message":"..."}}`.

use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::vmm::{Command, VmStatus};

/// The protocol version this build speaks (the `v` field).
pub const PROTOCOL_VERSION: u64 = 1;
/// Longest request line accepted, newline included.
pub const MAX_REQUEST_BYTES: usize = 4096;
/// Longest response line a client accepts (a status is a few hundred bytes).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Machine-readable error codes of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, or fields of the wrong type.
    BadRequest,
    /// The request line is longer than [`MAX_REQUEST_BYTES`].
    TooLarge,
    /// `v` is missing or not a version this build speaks.
    UnsupportedVersion,
    /// `cmd` names no command.
    UnknownCommand,
    /// The peer's uid is neither the VM owner's nor root's.
    Forbidden,
    /// The VM refused the command (e.g. `resume` while running).
    Refused,
    /// The VM has stopped or is not answering.
    Unavailable,
}

/// The `error` object of a failed response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = serde_json::to_value(self.code).unwrap_or(Value::Null);
        write!(f, "{} ({})", self.message, code.as_str().unwrap_or("?"))
    }
}

/// One response line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub v: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Reply {
    pub fn success(result: Value) -> Self {
        Reply {
            v: PROTOCOL_VERSION,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn failure(error: ErrorBody) -> Self {
        Reply {
            v: PROTOCOL_VERSION,
            ok: false,
            result: None,
            error: Some(error),
        }
    }

    /// The line to send, newline included.
    pub fn to_line(&self) -> String {
        // A Reply holds only strings, numbers and JSON values: it always
        // serializes.
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"v":1,"ok":false,"error":{"code":"bad_request","message":"unserializable"}}"#
                .to_string()
        });
        line.push('\n');
        line
    }

    /// Parse a response line received by a client.
    pub fn parse(line: &[u8]) -> Result<Reply, ErrorBody> {
        serde_json::from_slice(line).map_err(|e| {
            ErrorBody::new(
                ErrorCode::BadRequest,
                format!("malformed response from the VM: {e}"),
            )
        })
    }

    /// The result of a successful reply, or its error.
    pub fn into_result(self) -> Result<Value, ErrorBody> {
        match (self.ok, self.error) {
            (true, _) => Ok(self.result.unwrap_or(Value::Null)),
            (false, Some(error)) => Err(error),
            (false, None) => Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "failed response without an error object",
            )),
        }
    }
}

/// The `result` of `status`: the VMM's status plus what the process adds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResult {
    #[serde(flatten)]
    pub status: VmStatus,
    /// Process id of the VM process.
    pub pid: u32,
}

/// The protocol name of a command.
pub fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Pause => "pause",
        Command::Resume => "resume",
        Command::PowerButton => "power_button",
        Command::CtrlAltDel => "ctrl_alt_del",
        Command::Stop => "stop",
        Command::Status => "status",
    }
}

const COMMANDS: [Command; 6] = [
    Command::Status,
    Command::Pause,
    Command::Resume,
    Command::PowerButton,
    Command::CtrlAltDel,
    Command::Stop,
];

/// The request line for `command`, newline included.
pub fn request_line(command: &Command) -> String {
    format!(
        "{{\"v\":{PROTOCOL_VERSION},\"cmd\":\"{}\"}}\n",
        command_name(command)
    )
}

/// Parse one request line (without its newline). Unknown extra fields are
/// ignored so that later minor additions stay compatible.
pub fn parse_request(line: &[u8]) -> Result<Command, ErrorBody> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| ErrorBody::new(ErrorCode::BadRequest, format!("not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| ErrorBody::new(ErrorCode::BadRequest, "a request must be a JSON object"))?;
    match object.get("v").and_then(Value::as_u64) {
        Some(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(ErrorBody::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {v} is not supported (this VM speaks {PROTOCOL_VERSION})"
                ),
            ));
        }
        None => {
            return Err(ErrorBody::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "field \"v\" (protocol version, {PROTOCOL_VERSION}) is missing or not a number"
                ),
            ));
        }
    }
    let name = object
        .get("cmd")
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorBody::new(ErrorCode::BadRequest, "field \"cmd\" must be a string"))?;
    COMMANDS
        .iter()
        .find(|c| command_name(c) == name)
        .cloned()
        .ok_or_else(|| {
            let known: Vec<_> = COMMANDS.iter().map(command_name).collect();
            ErrorBody::new(
                ErrorCode::UnknownCommand,
                format!("unknown command {name:?}; known: {}", known.join(", ")),
            )
        })
}

/// What reading one line produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its newline.
    Complete(Vec<u8>),
    /// More than `max` bytes arrived without a newline.
    TooLong,
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
}

/// Read one `\n`-terminated line of at most `max` bytes (newline included)
/// without ever buffering more than `max`.
pub fn read_line(reader: &mut impl BufRead, max: usize) -> io::Result<Line> {
    let mut line = Vec::new();
    loop {
        let available = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.map_or(available.len(), |i| i + 1);
        if line.len() + take > max {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if newline.is_some() {
            line.pop();
            return Ok(Line::Complete(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::{ExitReason, VmState};

    #[test]
    fn every_command_round_trips() {
        for command in COMMANDS {
            let line = request_line(&command);
            assert!(line.ends_with('\n'));
            assert_eq!(parse_request(line.trim_end().as_bytes()), Ok(command));
        }
    }

    #[test]
    fn request_example_from_the_docs_parses() {
        assert_eq!(
            parse_request(br#"{"v":1,"cmd":"status"}"#),
            Ok(Command::Status)
        );
        // Extra fields are ignored.
        assert_eq!(
            parse_request(br#"{"cmd":"pause","v":1,"id":7}"#),
            Ok(Command::Pause)
        );
    }

    fn code(line: &[u8]) -> ErrorCode {
        parse_request(line).unwrap_err().code
    }

    #[test]
    fn malformed_requests_get_precise_codes() {
        assert_eq!(code(b"status"), ErrorCode::BadRequest);
        assert_eq!(code(b"{\"v\":1,"), ErrorCode::BadRequest);
        assert_eq!(code(b"[1,2]"), ErrorCode::BadRequest);
        assert_eq!(code(br#"{"v":1,"cmd":3}"#), ErrorCode::BadRequest);
        assert_eq!(code(br#"{"v":1}"#), ErrorCode::BadRequest);
        assert_eq!(code(br#"{"cmd":"status"}"#), ErrorCode::UnsupportedVersion);
        assert_eq!(
            code(br#"{"v":"1","cmd":"status"}"#),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(
            code(br#"{"v":2,"cmd":"status"}"#),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(
            code(br#"{"v":1,"cmd":"open_file"}"#),
            ErrorCode::UnknownCommand
        );
        assert_eq!(code(b"\xff\xfe"), ErrorCode::BadRequest);
    }

    #[test]
    fn replies_serialize_as_documented() {
        let ok = Reply::success(serde_json::json!({}));
        assert_eq!(ok.to_line(), "{\"v\":1,\"ok\":true,\"result\":{}}\n");
        let err = Reply::failure(ErrorBody::new(ErrorCode::TooLarge, "too long"));
        assert_eq!(
            err.to_line(),
            "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"too_large\",\"message\":\"too long\"}}\n"
        );
        let back = Reply::parse(err.to_line().trim_end().as_bytes()).unwrap();
        assert_eq!(back.into_result().unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn status_result_round_trips_flattened() {
        let status = StatusResult {
            status: VmStatus {
                name: "deb".into(),
                state: VmState::Paused,
                vcpus: 2,
                memory_mib: 512,
                uptime_secs: 9,
                exit_reason: Some(ExitReason::DebugExit { code: 3 }),
            },
            pid: 42,
        };
        let value = serde_json::to_value(&status).unwrap();
        assert_eq!(value["state"], "paused");
        assert_eq!(value["pid"], 42);
        assert_eq!(value["exit_reason"]["kind"], "debug_exit");
        let back: StatusResult = serde_json::from_value(value).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn read_line_limits_and_splits() {
        let mut input = io::BufReader::with_capacity(3, &b"ab\ncdef\n"[..]);
        assert_eq!(
            read_line(&mut input, 16).unwrap(),
            Line::Complete(b"ab".to_vec())
        );
        assert_eq!(
            read_line(&mut input, 16).unwrap(),
            Line::Complete(b"cdef".to_vec())
        );
        assert_eq!(read_line(&mut input, 16).unwrap(), Line::Eof);

        let long = [b'x'; 100];
        let mut input = io::BufReader::with_capacity(7, &long[..]);
        assert_eq!(read_line(&mut input, 50).unwrap(), Line::TooLong);

        // Exactly `max` bytes with the newline is accepted.
        let mut exact = vec![b'y'; 9];
        exact.push(b'\n');
        let mut input = &exact[..];
        assert_eq!(
            read_line(&mut input, 10).unwrap(),
            Line::Complete(vec![b'y'; 9])
        );
        let mut input = &exact[..];
        assert_eq!(read_line(&mut input, 9).unwrap(), Line::TooLong);
    }
}
