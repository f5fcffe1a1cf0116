use super::*;
use crate::packages::debian::index::Package;
use crate::packages::debian::relation::parse_field;

fn universe(text: &str) -> Universe {
    let mut u = Universe::default();
    u.add_index(text.as_bytes(), "test", "amd64", 0).unwrap();
    u
}

fn pkg(name: &str, version: &str, extra: &str) -> String {
    format!("Package: {name}\nVersion: {version}\nArchitecture: amd64\nFilename: pool/{name}.deb\nSize: 1\nSHA256: 00\n{extra}\n")
}

fn roots(names: &str) -> Vec<(Relation, String)> {
    parse_field(names).unwrap().into_iter().map(|mut g| (g.remove(0), "requested".to_string())).collect()
}

fn names(u: &Universe, r: &Resolution) -> Vec<String> {
    r.selected.iter().map(|&i| format!("{}={}", u.packages[i].name, u.packages[i].version)).collect()
}

#[test]
fn follows_depends_alternatives_and_versions() {
    let u = universe(
        &[
            pkg("app", "1", "Depends: lib (>= 2), mta | postfix\nPre-Depends: base"),
            pkg("lib", "1", ""),
            pkg("lib", "2", ""),
            pkg("base", "1", ""),
            pkg("exim", "4", "Provides: mta\nPriority: important"),
            pkg("nullmailer", "1", "Provides: mta\nPriority: optional"),
            pkg("postfix", "3", ""),
        ]
        .join("\n"),
    );
    let r = resolve(&u, "amd64", &roots("app")).unwrap();
    assert_eq!(names(&u, &r), ["app=1", "base=1", "exim=4", "lib=2"]);
    assert_eq!(r.reasons["exim"], "app → exim");
}

#[test]
fn an_already_selected_alternative_wins() {
    let u = universe(&[pkg("a", "1", "Depends: x | y"), pkg("x", "1", ""), pkg("y", "1", "")].join("\n"));
    let r = resolve(&u, "amd64", &roots("y, a")).unwrap();
    assert_eq!(names(&u, &r), ["a=1", "y=1"]);
}

#[test]
fn versioned_provides_and_multiarch_any() {
    let u = universe(&[pkg("a", "1", "Depends: v (>= 2), perl:any"), pkg("p", "1", "Provides: v (= 3)"), pkg("q", "1", "Provides: v"), pkg("perl", "5", "Multi-Arch: allowed")].join("\n"));
    let r = resolve(&u, "amd64", &roots("a")).unwrap();
    assert_eq!(names(&u, &r), ["a=1", "p=1", "perl=5"]);
    let u = universe(&[pkg("a", "1", "Depends: perl:any"), pkg("perl", "5", "")].join("\n"));
    let err = resolve(&u, "amd64", &roots("a")).unwrap_err().to_string();
    assert!(err.contains("no available version satisfies"), "{err}");
}

#[test]
fn unsatisfiable_names_the_chain() {
    let u = universe(&[pkg("openssh-server", "1", "Depends: libwrap0"), pkg("libwrap0", "1", "Depends: libfoo (>= 2)")].join("\n"));
    let err = resolve(&u, "amd64", &roots("openssh-server")).unwrap_err().to_string();
    assert_eq!(err, "openssh-server → libwrap0 → libfoo (>= 2): no package provides libfoo (>= 2)");
}

#[test]
fn conflicts_and_breaks_are_refused_or_avoided() {
    let u = universe(&[pkg("a", "1", "Conflicts: b"), pkg("b", "1", "")].join("\n"));
    let err = resolve(&u, "amd64", &roots("a, b")).unwrap_err().to_string();
    assert!(err.contains("conflict"), "{err}");
    // A provider that breaks the selection is passed over for the next one.
    let u = universe(&[pkg("a", "1", ""), pkg("p1", "1", "Provides: v\nBreaks: a"), pkg("p2", "1", "Provides: v"), pkg("c", "1", "Depends: v")].join("\n"));
    let r = resolve(&u, "amd64", &roots("a, c")).unwrap();
    assert_eq!(names(&u, &r), ["a=1", "c=1", "p2=1"]);
    // A package conflicting with what it provides is fine.
    let u = universe(&pkg("mawk", "1", "Provides: awk\nConflicts: awk"));
    assert!(resolve(&u, "amd64", &roots("awk")).is_ok());
}

/// A real index trimmed from the host's apt lists by `tests/fixtures/packages-closure.sh`.
fn real_index() -> String {
    let out = std::env::temp_dir().join(format!("anemos-closure-{}.Packages", std::process::id()));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/packages-closure.sh");
    let st = std::process::Command::new("sh").arg(script).arg(&out).args(["openssh-server", "apt"]).status().unwrap();
    assert!(st.success(), "packages-closure.sh failed (needs apt lists: apt-get update)");
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    text
}

#[test]
fn resolves_a_real_closure_completely() {
    let text = real_index();
    let u = universe(&text);
    let r = resolve(&u, "amd64", &roots("openssh-server, apt")).unwrap();
    let chosen: Vec<&Package> = r.selected.iter().map(|&i| &u.packages[i]).collect();
    for p in &chosen {
        // The highest version of each name was taken, and every dependency is met inside the set.
        assert_eq!(u.candidate(&p.name).map(|c| &u.packages[c].version), Some(&p.version), "{}", p.name);
        for g in p.pre_depends().unwrap().iter().chain(&p.depends().unwrap()) {
            assert!(g.iter().any(|rel| chosen.iter().any(|q| satisfies(q, rel, "amd64"))), "{}: unmet {:?}", p.name, g);
        }
    }
    assert!(chosen.iter().any(|p| p.name == "openssh-sftp-server"));
    assert_eq!(r.reasons["openssh-sftp-server"], "openssh-server → openssh-sftp-server");

    // Without openssh-sftp-server in the index the error names the chain.
    let trimmed: Vec<&str> = text.split("\n\n").filter(|p| !p.starts_with("Package: openssh-sftp-server\n")).collect();
    let u = universe(&trimmed.join("\n\n"));
    let err = resolve(&u, "amd64", &roots("openssh-server")).unwrap_err().to_string();
    assert_eq!(err, "openssh-server → openssh-sftp-server: no package provides openssh-sftp-server");
}
