//! Turns a file name offered by a peer into one that is safe to create in a chosen
//! directory, and picks a free name when the file already exists.
//!
//! The offered name is never trusted: it must never reach outside the target directory,
//! name a device on Windows, hide itself, or carry control characters. This module does
//! no IO except [`free_path`], which only asks whether paths exist.

use std::path::{Path, PathBuf};

/// The longest file name, in bytes, that the sanitiser lets through (common file systems
/// allow 255).
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Why an offered file name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeFileName {
    /// Nothing is left once directories, trailing dots and spaces are removed.
    #[error("the file name is empty")]
    Empty,
    /// The name is `.` or `..` (or ends in such a path component).
    #[error("the file name {0:?} refers to a directory")]
    DotName(String),
    /// The name contains a control character (NUL, newline, escape, ...).
    #[error("the file name contains a control character")]
    ControlCharacter,
    /// The name is reserved on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9).
    #[error("the file name {0:?} is reserved on Windows")]
    Reserved(String),
    /// The name is longer than [`MAX_FILE_NAME_LEN`] bytes.
    #[error("the file name is {0} bytes long, more than {MAX_FILE_NAME_LEN}")]
    TooLong(usize),
}

/// Makes an offered file name safe to create inside a directory.
///
/// - Directories are stripped: only the part after the last `/` or `\` is kept, so
///   `../../x`, `/etc/x` and `C:\x` all become `x`.
/// - `.` and `..` (as the last component), empty names and names with control
///   characters are refused.
/// - Characters Windows cannot store (`< > : " | ? *`) become `_`; trailing dots and
///   spaces (which Windows drops) are removed.
/// - Invisible characters that make a name read otherwise than it is are removed:
///   direction marks, embeddings, overrides and isolates (`evil\u{202e}gnp.exe`, shown
///   as `evilexe.png`, becomes `evilgnp.exe`), zero-width spaces and joiners, the word
///   joiner and the byte-order mark.
/// - A leading dot becomes `_`, so a received file is never hidden (`.bashrc` becomes
///   `_bashrc`).
/// - Windows device names (`CON`, `con.txt`, `LPT1.tar.gz`, ...) are refused, in any case
///   and with or without an extension.
pub fn sanitize(offered: &str) -> Result<String, UnsafeFileName> {
    if offered.chars().any(char::is_control) {
        return Err(UnsafeFileName::ControlCharacter);
    }
    let last = offered.rsplit(['/', '\\']).next().unwrap_or(offered);
    if last == "." || last == ".." {
        return Err(UnsafeFileName::DotName(last.to_owned()));
    }
    let trimmed = last.trim_end_matches(['.', ' ']).trim_start_matches(' ');
    if trimmed.is_empty() {
        return Err(UnsafeFileName::Empty);
    }
    let mut name: String = trimmed
        .chars()
        .filter(|c| !is_invisible(*c))
        .map(|c| match c {
            '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c => c,
        })
        .collect();
    if name.trim().is_empty() {
        return Err(UnsafeFileName::Empty);
    }
    if name.starts_with('.') {
        name.replace_range(..1, "_");
    }
    if is_reserved_on_windows(&name) {
        return Err(UnsafeFileName::Reserved(name));
    }
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(UnsafeFileName::TooLong(name.len()));
    }
    Ok(name)
}

/// Direction controls (ALM, LRM, RLM, embeddings, overrides, isolates) and zero-width
/// characters: they change how a name reads without showing themselves.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
    )
}

/// Whether Windows treats `name` as a device, whatever its extension: the part before
/// the first dot (without trailing spaces) is CON, PRN, AUX, NUL, COM1-9 or LPT1-9.
fn is_reserved_on_windows(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" => true,
        _ => {
            let bytes = upper.as_bytes();
            bytes.len() == 4
                && (upper.starts_with("COM") || upper.starts_with("LPT"))
                && matches!(bytes[3], b'1'..=b'9')
        }
    }
}

/// The `n`-th alternative for `name`: `report.pdf` becomes `report (n).pdf`, `notes`
/// becomes `notes (n)`.
pub fn numbered(name: &str, n: u32) -> String {
    match name.rfind('.') {
        // A dot at index 0 is not an extension separator (sanitised names never start
        // with one, but this helper does not rely on that).
        Some(dot) if dot > 0 => format!("{} ({n}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({n})"),
    }
}

/// The first of `dir/name`, `dir/name (1)`, `dir/name (2)`, ... that does not exist.
///
/// Only a hint: the caller must still create the file without overwriting (another
/// process may take the name in between).
pub fn free_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !exists(&first) {
        return first;
    }
    (1..)
        .map(|n| dir.join(numbered(name, n)))
        .find(|p| !exists(p))
        .unwrap_or(first)
}

/// Whether anything (a file, a directory, a dangling symlink) is at `path`.
fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        match sanitize(s) {
            Ok(n) => n,
            Err(e) => panic!("{s:?} was refused: {e}"),
        }
    }

    #[test]
    fn direction_overrides_and_zero_width_characters_are_removed() {
        assert_eq!(ok("evil\u{202e}gnp.exe"), "evilgnp.exe");
        assert_eq!(ok("in\u{2066}voice\u{2069}.pdf"), "invoice.pdf");
        assert_eq!(ok("a\u{200b}b\u{200d}c\u{feff}.txt"), "abc.txt");
        assert_eq!(ok("\u{200e}\u{200f}ok"), "ok");
        assert_eq!(sanitize("\u{202e}\u{200b}"), Err(UnsafeFileName::Empty));
        // Letters of right-to-left scripts are not controls: they stay.
        assert_eq!(ok("שלום.txt"), "שלום.txt");
    }

    #[test]
    fn plain_names_pass_unchanged() {
        assert_eq!(ok("report.pdf"), "report.pdf");
        assert_eq!(ok("Ünïcödé 文件.txt"), "Ünïcödé 文件.txt");
        assert_eq!(ok("archive.tar.gz"), "archive.tar.gz");
    }

    #[test]
    fn parent_directory_components_are_stripped() {
        assert_eq!(ok("../../x"), "x");
        assert_eq!(ok("a/../../b.txt"), "b.txt");
    }

    #[test]
    fn absolute_unix_paths_keep_only_the_file_name() {
        assert_eq!(ok("/etc/passwd"), "passwd");
    }

    #[test]
    fn windows_paths_and_drive_letters_are_stripped() {
        assert_eq!(ok("C:\\x"), "x");
        assert_eq!(ok("C:\\Windows\\..\\evil.exe"), "evil.exe");
        assert_eq!(ok("C:x"), "C_x");
        assert_eq!(ok("\\\\server\\share\\f"), "f");
    }

    #[test]
    fn control_characters_are_refused() {
        assert_eq!(sanitize("a\u{0}b"), Err(UnsafeFileName::ControlCharacter));
        assert_eq!(sanitize("a\nb"), Err(UnsafeFileName::ControlCharacter));
        assert_eq!(
            sanitize("a\u{1b}[31m"),
            Err(UnsafeFileName::ControlCharacter)
        );
        assert_eq!(sanitize("x\u{7f}"), Err(UnsafeFileName::ControlCharacter));
    }

    #[test]
    fn windows_device_names_are_refused_in_any_case_and_with_extensions() {
        for name in [
            "CON",
            "con",
            "con.txt",
            "Con.tar.gz",
            "PRN",
            "aux.c",
            "NUL",
            "nul ",
            "COM1",
            "com9.log",
            "LPT1",
            "lpt5.txt",
            "CON .txt",
        ] {
            assert!(
                matches!(sanitize(name), Err(UnsafeFileName::Reserved(_))),
                "{name:?} was not refused"
            );
        }
    }

    #[test]
    fn names_that_merely_resemble_device_names_pass() {
        assert_eq!(ok("console.txt"), "console.txt");
        assert_eq!(ok("COM10"), "COM10");
        assert_eq!(ok("COM0"), "COM0");
        assert_eq!(ok("nullable.rs"), "nullable.rs");
        assert_eq!(ok("LPT"), "LPT");
    }

    #[test]
    fn empty_and_dot_names_are_refused() {
        assert_eq!(sanitize(""), Err(UnsafeFileName::Empty));
        assert_eq!(sanitize("."), Err(UnsafeFileName::DotName(".".into())));
        assert_eq!(sanitize(".."), Err(UnsafeFileName::DotName("..".into())));
        assert_eq!(sanitize("a/.."), Err(UnsafeFileName::DotName("..".into())));
        assert_eq!(sanitize("dir/"), Err(UnsafeFileName::Empty));
        assert_eq!(sanitize("..."), Err(UnsafeFileName::Empty));
        assert_eq!(sanitize("   "), Err(UnsafeFileName::Empty));
    }

    #[test]
    fn leading_dots_are_replaced_so_files_are_never_hidden() {
        assert_eq!(ok(".bashrc"), "_bashrc");
        assert_eq!(ok("..hidden"), "_.hidden");
    }

    #[test]
    fn characters_windows_cannot_store_become_underscores() {
        assert_eq!(ok("a<b>c:d\"e|f?g*h"), "a_b_c_d_e_f_g_h");
    }

    #[test]
    fn trailing_dots_and_spaces_are_removed() {
        assert_eq!(ok("name.txt. . "), "name.txt");
        assert_eq!(ok(" lead"), "lead");
    }

    #[test]
    fn overlong_names_are_refused() {
        let long = "a".repeat(MAX_FILE_NAME_LEN + 1);
        assert_eq!(
            sanitize(&long),
            Err(UnsafeFileName::TooLong(MAX_FILE_NAME_LEN + 1))
        );
        assert_eq!(ok(&"b".repeat(MAX_FILE_NAME_LEN)).len(), MAX_FILE_NAME_LEN);
    }

    #[test]
    fn a_sanitised_name_is_a_single_normal_path_component() {
        for offered in ["../../x", "/etc/passwd", "C:\\x", "a/b/c.txt", ".hidden"] {
            let name = ok(offered);
            let mut components = Path::new(&name).components();
            assert!(matches!(
                components.next(),
                Some(std::path::Component::Normal(_))
            ));
            assert!(components.next().is_none(), "{offered:?} -> {name:?}");
        }
    }

    #[test]
    fn numbered_names_go_before_the_extension() {
        assert_eq!(numbered("report.pdf", 1), "report (1).pdf");
        assert_eq!(numbered("archive.tar.gz", 2), "archive.tar (2).gz");
        assert_eq!(numbered("notes", 3), "notes (3)");
        assert_eq!(numbered(".x", 1), ".x (1)");
    }

    #[test]
    fn free_path_skips_existing_files() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(free_path(dir.path(), "a.txt"), dir.path().join("a.txt"));
        std::fs::write(dir.path().join("a.txt"), b"1")?;
        std::fs::write(dir.path().join("a (1).txt"), b"2")?;
        assert_eq!(free_path(dir.path(), "a.txt"), dir.path().join("a (2).txt"));
        Ok(())
    }
}
