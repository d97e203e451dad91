//! The terminal paths (edit's re-edit/discard question, delete's
//! confirmation, the create wizard), driven through a pseudo-terminal made
//! by util-linux `script`, each run bounded by `timeout`.

mod cli_support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use cli_support::{BIN, Env};

/// Seconds before a run on the terminal is killed.
const TIMEOUT_SECS: &str = "60";

/// Run `xhyve-manager ARGS --home LIB` on a pseudo-terminal fed `input`.
fn on_terminal(env: &Env, args: &str, input: &str, editor: Option<&Path>) -> Output {
    let command = format!("{BIN} {args} --home '{}'", env.lib().display());
    let mut cmd = Command::new("timeout");
    cmd.args([TIMEOUT_SECS, "script", "-qec", &command, "/dev/null"])
        .current_dir(env.tmp.path())
        .env("HOME", env.home())
        .env_remove("VISUAL")
        .env_remove("EDITOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(editor) = editor {
        cmd.env("EDITOR", editor);
    }
    let mut child = cmd.spawn().expect("util-linux script");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// An editor that breaks cpus on its first run and sets 7 afterwards.
fn flaky_editor(env: &Env) -> std::path::PathBuf {
    let count = env.path("count");
    env.script(
        "flaky.sh",
        &format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\n\
             if [ $n = 1 ]; then v=0; else v=7; fi\n\
             sed -i \"s/^cpus = .*/cpus = $v/\" \"$1\"",
            c = count.display()
        ),
    )
}

#[test]
fn edit_offers_to_edit_again_after_an_invalid_result() {
    let env = Env::new();
    env.ok(&["create", "t"]);
    let output = on_terminal(&env, "edit t", "e\n", Some(&flaky_editor(&env)));
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("[processor] cpus = \"0\""), "{out}");
    assert!(out.contains("Edit again (e) or discard"), "{out}");
    let config = fs::read_to_string(env.vm_dir("t").join("config.ini")).unwrap();
    assert!(config.contains("\ncpus = 7\n"), "{config}");
}

#[test]
fn edit_discard_keeps_the_previous_file() {
    let env = Env::new();
    env.ok(&["create", "t"]);
    let path = env.vm_dir("t").join("config.ini");
    let before = fs::read(&path).unwrap();
    let output = on_terminal(&env, "edit t", "d\n", Some(&flaky_editor(&env)));
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("changes discarded"), "{out}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert!(
        cli_support::entries(&env.vm_dir("t"))
            .iter()
            .all(|e| !e.starts_with('.'))
    );
}

#[test]
fn delete_asks_and_respects_the_answer() {
    let env = Env::new();
    env.ok(&["create", "t"]);
    let output = on_terminal(&env, "delete t", "n\n", None);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("Nothing deleted"),
        "{}",
        text(&output)
    );
    assert!(env.vm_dir("t").is_dir());
    let output = on_terminal(&env, "delete t", "y\n", None);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!env.vm_dir("t").exists());
}

#[test]
fn create_wizard_asks_when_given_only_a_name() {
    let env = Env::new();
    let kernel = env.file("vmlinuz-w", "k");
    // type, cpus (a bad one first), memory, ISO, kernel, initrd, cmdline,
    // disk size, existing disk, tap
    let answers = format!(
        "bsd\n999\n3\n700M\n\n{}\n\nconsole=ttyS0\n\n\ntap4\n",
        kernel.display()
    );
    let output = on_terminal(&env, "create wiz", &answers, None);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("'999' is not allowed"), "{out}");
    let config = fs::read_to_string(env.vm_dir("wiz").join("config.ini")).unwrap();
    for line in [
        "type = bsd",
        "cpus = 3",
        "size = 700M",
        "kernel = vmlinuz-w",
        "options = console=ttyS0",
        "tap = tap4",
    ] {
        assert!(config.contains(line), "{line} missing in\n{config}");
    }
}

#[test]
fn create_wizard_cancelled_leaves_nothing() {
    let env = Env::new();
    let output = on_terminal(&env, "create wiz", "linux\n2\n\u{4}", None);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("cancelled"), "{}", text(&output));
    assert!(cli_support::entries(&env.lib()).is_empty());
}
