//! The checks behind the fuzz target `config`: the server's configuration parser
//! (`ServerConfig::from_toml`, which `vcom-server serve --config FILE` runs on the
//! file's text) never panics, and every outcome is a configuration that validates or an
//! error that names what is wrong.

use std::path::Path;

use vcom_server::{ConfigError, ServerConfig};

/// The file name the errors must name.
const ORIGIN: &str = "fuzz.toml";

/// Everything the fuzz target `config` does with one input: the bytes as a file's text
/// (as they are when they are UTF-8, lossily decoded when not: the file reader refuses
/// invalid UTF-8 before parsing), then the same bytes read as a choice of keys and
/// values written out as TOML, so that the fuzzer also reaches the range checks behind
/// the parser.
pub fn check(data: &[u8]) {
    match std::str::from_utf8(data) {
        Ok(text) => check_text(text),
        Err(_) => check_text(&String::from_utf8_lossy(data)),
    }
    check_text(&toml_from(data));
}

/// Parses `text` as a configuration file and checks the outcome.
///
/// Panics if the parser panics, if a configuration it accepts does not validate (or
/// parses differently a second time), or if an error does not say what is wrong.
pub fn check_text(text: &str) {
    let origin = Path::new(ORIGIN);
    match ServerConfig::from_toml(text, origin) {
        Ok(config) => {
            if let Err(e) = config.validate() {
                panic!("an accepted configuration does not validate: {e}\n{text}");
            }
            assert!(
                config.handshake_timeout() <= config.login_timeout(),
                "the handshake may outlast the login"
            );
            assert_eq!(config.protocol_limits(), config.limits.limits());
            // Not file keys: the text cannot set them.
            let defaults = ServerConfig::default();
            assert_eq!(
                config.data_dir, defaults.data_dir,
                "data_dir set by the file"
            );
            assert_eq!(config.packet_tap, None, "packet_tap set by the file");
            match ServerConfig::from_toml(text, origin) {
                Ok(again) => assert_eq!(again, config, "parsed differently a second time"),
                Err(e) => panic!("accepted once, refused the second time: {e}"),
            }
        }
        Err(error) => check_error(text, &error),
    }
}

fn check_error(text: &str, error: &ConfigError) {
    let shown = error.to_string();
    match error {
        ConfigError::Parse { path, message } => {
            assert_eq!(path, Path::new(ORIGIN), "{shown}");
            assert!(!message.trim().is_empty(), "an empty parse error");
            assert!(shown.contains(ORIGIN), "{shown}: does not name the file");
            // `line N (`...`): ...`: the line must exist.
            if let Some(rest) = message.strip_prefix("line ") {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let Ok(line) = digits.parse::<usize>() else {
                    panic!("{shown}: no line number");
                };
                let lines = text.lines().count().max(1);
                assert!(
                    (1..=lines + 1).contains(&line),
                    "{shown}: line {line} of {lines}"
                );
            }
        }
        ConfigError::Invalid { key, problem } => {
            assert!(
                !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.'),
                "{shown}: not a key"
            );
            assert!(!problem.trim().is_empty(), "{shown}: no problem stated");
            assert!(shown.contains(key), "{shown}: does not name its key");
        }
        ConfigError::Read { .. } => panic!("parsing text read a file: {shown}"),
        ConfigError::Env { .. } => panic!("parsing text with no environment blamed it: {shown}"),
    }
}

/// Keys by table (`""` is the top level), and one that no table has.
const KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "listen",
            "password",
            "auth",
            "registration",
            "password_free_attempts",
            "password_max_wait_secs",
            "login_timeout_secs",
            "transfer_idle_timeout_secs",
            "write_timeout_secs",
            "max_file_size",
            "max_connections",
            "max_connections_per_ip",
            "max_transfers_per_user",
            "outbound_queue",
            "max_pending_logins",
            "max_pending_logins_per_ip",
            "handshake_timeout_secs",
            "data_dir",
            "packet_tap",
            "no_such_key",
        ],
    ),
    (
        "limits",
        &[
            "max_user_id_len",
            "max_password_len",
            "max_message_len",
            "max_list_len",
            "max_file_name_len",
            "no_such_key",
        ],
    ),
    ("tls", &["cert", "key", "names", "no_such_key"]),
    (
        "retention",
        &[
            "delivered_max_age_days",
            "delivered_max_count",
            "pending_per_user",
            "transfer_log_max",
            "devices_per_user",
            "no_such_key",
        ],
    ),
    ("no_such_table", &["x"]),
];

/// Values at the edges of every range the configuration checks, and of the types.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "15",
    "16",
    "64",
    "1024",
    "3600",
    "3601",
    "4096",
    "4097",
    "65536",
    "65537",
    "86400",
    "86401",
    "36500",
    "1000000",
    "1000001",
    "67108864",
    "67108865",
    "2147483647",
    "2147483648",
    "1000000000000",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "1e3",
    "nan",
    "true",
    "\"\"",
    "\"open\"",
    "\"closed\"",
    "\"key\"",
    "\"Key\"",
    "\"0.0.0.0:7420\"",
    "\"[::1]:0\"",
    "\"127.0.0.1\"",
    "\"/etc/vcom/cert.pem\"",
    "\"h\u{e9}\u{e9}\"",
    "[]",
    "[\"chat.example.org\", \"192.0.2.1\"]",
    "[1]",
    "{}",
    "1979-05-27T07:32:00Z",
];

/// Reads `data` as (table, key, value) choices, three bytes each, and writes them out
/// as a TOML document: the top-level keys first, then one header per table.
pub fn toml_from(data: &[u8]) -> String {
    let mut tables: Vec<(&str, Vec<String>)> = KEYS.iter().map(|(t, _)| (*t, Vec::new())).collect();
    for choice in data.chunks(3) {
        let [t, k, v] = [0, 1, 2].map(|i| usize::from(choice.get(i).copied().unwrap_or(0)));
        let (table, keys) = KEYS[t % KEYS.len()];
        let key = keys[k % keys.len()];
        let value = VALUES[v % VALUES.len()];
        if let Some((_, lines)) = tables.iter_mut().find(|(name, _)| *name == table) {
            lines.push(format!("{key} = {value}"));
        }
    }
    let mut text = String::new();
    for (table, lines) in tables {
        if lines.is_empty() {
            continue;
        }
        if !table.is_empty() {
            text.push_str(&format!("[{table}]\n"));
        }
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}
