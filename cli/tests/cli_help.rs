//! `--help`, `-h`, `man` and `completions`: what a user reads before anything else.

use crate::common::{cmd, run_cmd, run_in};

/// The subcommands the top-level help lists (so a new one is covered without editing
/// this file), with the nested ones.
fn commands() -> Vec<String> {
    let r = run_in(&["--help"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let list = r
        .stdout
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section")
        .split("\n\n")
        .next()
        .unwrap();
    let mut out = Vec::new();
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name == "help" || !line.starts_with("  ") || line.starts_with("   ") {
            continue;
        }
        out.push(name.to_owned());
    }
    for nested in ["cluster", "audit"] {
        assert!(out.iter().any(|c| c == nested), "{out:?}");
        let r = run_in(&[nested, "--help"]);
        let list = r.stdout.split("Commands:\n").nth(1).unwrap_or_default();
        for line in list.split("\n\n").next().unwrap().lines() {
            let name = line.split_whitespace().next().unwrap_or("help");
            if name != "help" && line.starts_with("  ") && !line.starts_with("   ") {
                out.push(format!("{nested} {name}"));
            }
        }
    }
    assert!(out.len() >= 14, "{out:?}");
    out
}

#[test]
fn every_short_help_fits_a_screen_and_the_long_help_has_everything() {
    for c in commands() {
        let words: Vec<&str> = c.split(' ').collect();
        let short = run_in(&[&words[..], &["-h"]].concat());
        let long = run_in(&[&words[..], &["--help"]].concat());
        assert_eq!((short.code, long.code), (0, 0), "{c}");
        let lines = short.stdout.lines().count();
        assert!(lines <= 45, "`{c} -h` has {lines} lines:\n{}", short.stdout);
        // Rarely used global flags only in the long help.
        assert!(
            !short.stdout.contains("--clone-remote"),
            "{c}: {}",
            short.stdout
        );
        assert!(long.stdout.contains("--clone-remote"), "{c}");
        assert!(short.stdout.contains("--repo"), "{c}");
        // The command's summary is one line.
        let summary = short.stdout.lines().next().unwrap();
        assert!(summary.len() <= 100, "{c}: {summary}");
    }
}

#[test]
fn a_commands_own_flags_come_before_the_selection_and_the_global_flags() {
    let r = run_in(&["rotate", "-h"]);
    let at = |needle: &str| {
        r.stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} missing:\n{}", r.stdout))
    };
    assert!(at("--dry-run") < at("Selection:"), "{}", r.stdout);
    assert!(at("Selection:") < at("Global options:"), "{}", r.stdout);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn help_and_manual_stand_on_their_own() {
    let mut texts = vec![("man".to_owned(), run_in(&["man"]).stdout)];
    texts.push(("--help".into(), run_in(&["--help"]).stdout));
    for c in commands() {
        let words: Vec<&str> = c.split(' ').collect();
        texts.push((
            c.clone(),
            run_in(&[&words[..], &["--help"]].concat()).stdout,
        ));
    }
    for (what, text) in texts {
        for cite in ["seed", "DESIGN", "§"] {
            assert!(!text.contains(cite), "{what} cites `{cite}`");
        }
    }
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = run_in(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        for needle in ["rotate", "older-than", "audit"] {
            assert!(r.stdout.contains(needle), "{shell} lacks {needle}");
        }
    }
    // The bash script loads and registers the command.
    let script = run_in(&["completions", "bash"]).stdout;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.bash");
    std::fs::write(&file, script).unwrap();
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            &format!("source {} && complete -p secret-manager", file.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("secret-manager"));
    assert_eq!(run_in(&["completions", "tcsh"]).code, 2);
}

#[test]
fn man_prints_one_page_or_writes_one_per_command() {
    let r = run_in(&["man"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(".TH secret-manager 1"),
        "{}",
        &r.stdout[..200]
    );
    for section in [
        "\"SECRET-MANAGER ROTATE\"",
        "\"SECRET-MANAGER AUDIT EXPORT\"",
        "GLOBAL OPTIONS",
    ] {
        assert!(r.stdout.contains(section), "{section}");
    }
    // The global options are said once, not for every command.
    assert_eq!(
        r.stdout.matches("clone\\-remote").count(),
        2,
        "synopsis and options"
    );
    let dir = tempfile::tempdir().unwrap();
    let r = run_cmd(cmd().args(["man", "--out-dir", dir.path().to_str().unwrap()]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for c in commands() {
        let page = dir
            .path()
            .join(format!("secret-manager-{}.1", c.replace(' ', "-")));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|_| panic!("{page:?}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page:?}");
    }
    assert!(dir.path().join("secret-manager.1").exists());
    let missing = dir.path().join("nope");
    let r = run_cmd(cmd().args(["man", "--out-dir", missing.to_str().unwrap()]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("create it first"), "{}", r.stderr);
}

/// `delete --help` speaks of a removal, not of a new key; rotation-only flags are not
/// offered, and passing one is a usage error rather than silently ignored.
#[test]
fn delete_help_speaks_of_a_removal() {
    let r = run_in(&["delete", "--help"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for rotation_words in ["new key", "minted", "--reseal", "--require-synced"] {
        assert!(
            !r.stdout.contains(rotation_words),
            "{rotation_words}:\n{}",
            r.stdout
        );
    }
    assert!(
        r.stdout
            .contains("Grace period between publishing the removal and revoking the key"),
        "{}",
        r.stdout
    );
    let r = run_in(&["delete", "--name", "x", "--reseal", "--dry-run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("delete: --reseal is a rotation flag"),
        "{}",
        r.stderr
    );
}
