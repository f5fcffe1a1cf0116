//! The package set as `pacman -S TARGETS` would choose it with `--noconfirm`: a target is a
//! package (from the first repository that has it), else a group (all its members), else the
//! first provider; each dependency is satisfied by a package already chosen, else by the
//! first package of that name that satisfies it, else by the first provider, repositories
//! in order (libalpm `deps.c`, `resolvedep`). Conflicts between the chosen packages are an
//! error, as a fresh system has nothing to remove.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{bail, Result};

use super::db::Package;
use super::depend::Depend;

/// All packages of all repositories, repository order kept.
#[derive(Debug, Default)]
pub struct Universe {
    pub packages: Vec<Package>,
    by_name: HashMap<String, Vec<usize>>,
    by_provision: HashMap<String, Vec<usize>>,
    by_group: HashMap<String, Vec<usize>>,
}

impl Universe {
    pub fn add(&mut self, pkgs: Vec<Package>) {
        for p in pkgs {
            let i = self.packages.len();
            self.by_name.entry(p.name.clone()).or_default().push(i);
            for prov in &p.provides {
                self.by_provision.entry(prov.name.clone()).or_default().push(i);
            }
            for g in &p.groups {
                self.by_group.entry(g.clone()).or_default().push(i);
            }
            self.packages.push(p);
        }
    }

    /// The first package satisfying `dep`: by name first, then by provision.
    pub fn satisfier(&self, dep: &Depend) -> Option<usize> {
        let named = self.by_name.get(&dep.name).into_iter().flatten();
        let provided = self.by_provision.get(&dep.name).into_iter().flatten();
        named.chain(provided).copied().find(|&i| dep.satisfied_by(&self.packages[i]))
    }

    /// Members of a group, first repository's package for each name, sorted by name.
    pub fn group(&self, name: &str) -> Vec<usize> {
        let mut seen = BTreeMap::new();
        for &i in self.by_group.get(name).into_iter().flatten() {
            seen.entry(self.packages[i].name.clone()).or_insert(i);
        }
        seen.into_values().collect()
    }
}

/// The chosen packages in install order (each after what it depends on), which of them
/// were asked for (pacman's "explicitly installed"), and why each is there.
#[derive(Debug)]
pub struct Resolution {
    pub order: Vec<usize>,
    pub explicit: BTreeSet<String>,
    pub reasons: BTreeMap<String, String>,
}

pub fn resolve(u: &Universe, targets: &[String], arch: &str) -> Result<Resolution> {
    let mut chosen: Vec<usize> = Vec::new();
    let mut explicit = BTreeSet::new();
    let mut reasons = BTreeMap::new();
    let mut queue: Vec<(usize, String)> = Vec::new();
    let mut add = |i: usize, why: String, chosen: &mut Vec<usize>, queue: &mut Vec<(usize, String)>| {
        if !chosen.contains(&i) {
            chosen.push(i);
            reasons.insert(u.packages[i].name.clone(), why.clone());
            queue.push((i, why));
        }
    };
    for t in targets {
        let dep = Depend::parse(t)?;
        let picks = if let Some(i) = u.by_name.get(&dep.name).and_then(|v| v.iter().copied().find(|&i| dep.satisfied_by(&u.packages[i]))) {
            vec![i]
        } else if dep.version.is_none() && !u.group(&dep.name).is_empty() {
            u.group(&dep.name)
        } else if let Some(i) = u.satisfier(&dep) {
            vec![i]
        } else {
            bail!("target not found: {t} (no package, group or provider of that name in the repositories)");
        };
        for i in picks {
            explicit.insert(u.packages[i].name.clone());
            add(i, format!("({t})"), &mut chosen, &mut queue);
        }
    }
    while let Some((i, why)) = queue.pop() {
        let p = &u.packages[i];
        for dep in &p.depends {
            if chosen.iter().any(|&c| dep.satisfied_by(&u.packages[c])) {
                continue;
            }
            let Some(j) = u.satisfier(dep) else {
                bail!("{why} → {}: no package satisfies the dependency {dep}", p.name);
            };
            add(j, format!("{why} → {}", p.name), &mut chosen, &mut queue);
        }
    }
    for &i in &chosen {
        let p = &u.packages[i];
        if p.arch != "any" && p.arch != arch && !p.arch.is_empty() {
            bail!("package {} {} is for {}, not {arch}", p.name, p.version, p.arch);
        }
        for c in &p.conflicts {
            if let Some(&j) = chosen.iter().find(|&&j| j != i && c.satisfied_by(&u.packages[j])) {
                bail!("unresolvable conflict: {} conflicts with {} ({c})", p.name, u.packages[j].name);
            }
        }
    }
    Ok(Resolution { order: install_order(u, &chosen), explicit, reasons })
}

/// `chosen` ordered so that each package comes after the ones it depends on (cycles broken
/// where they close, as libalpm's `_alpm_sortbydeps` does), ties by name.
fn install_order(u: &Universe, chosen: &[usize]) -> Vec<usize> {
    let mut sorted = chosen.to_vec();
    sorted.sort_by(|&a, &b| u.packages[a].name.cmp(&u.packages[b].name));
    let mut order = Vec::new();
    let mut state: HashMap<usize, u8> = HashMap::new();
    fn visit(i: usize, u: &Universe, set: &[usize], state: &mut HashMap<usize, u8>, order: &mut Vec<usize>) {
        if state.get(&i).is_some() {
            return;
        }
        state.insert(i, 1);
        for dep in &u.packages[i].depends {
            if let Some(&j) = set.iter().find(|&&j| dep.satisfied_by(&u.packages[j])) {
                visit(j, u, set, state, order);
            }
        }
        order.push(i);
    }
    for &i in &sorted {
        visit(i, u, &sorted, &mut state, &mut order);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, version: &str, extra: &str) -> Package {
        let mut pkg = Package { name: name.into(), version: version.into(), arch: "x86_64".into(), filename: format!("{name}.pkg"), ..Package::default() };
        pkg.add_sections(extra, "test").unwrap();
        pkg
    }

    fn universe() -> Universe {
        let mut u = Universe::default();
        u.add(vec![
            p("filesystem", "1-1", "%GROUPS%\nbase\n"),
            p("busybox", "1.35-1", "%GROUPS%\nbase\n\n%PROVIDES%\nsh=1.35\n"),
            p("hello", "2.0-1", "%DEPENDS%\nlibgreet>=1.2\nsh\n"),
            p("libgreet-ng", "3-1", "%PROVIDES%\nlibgreet=1.5\n"),
            p("libgreet-old", "1-1", "%PROVIDES%\nlibgreet=1.0\n"),
            p("hello-git", "3-1", "%CONFLICTS%\nhello\n"),
            p("loop-a", "1-1", "%DEPENDS%\nloop-b\n"),
            p("loop-b", "1-1", "%DEPENDS%\nloop-a\n"),
        ]);
        u.add(vec![p("hello", "9-1", "")]);
        u
    }

    fn names(u: &Universe, r: &Resolution) -> Vec<String> {
        r.order.iter().map(|&i| format!("{}-{}", u.packages[i].name, u.packages[i].version)).collect()
    }

    #[test]
    fn groups_provisions_and_order() {
        let u = universe();
        let r = resolve(&u, &["base".into(), "hello".into()], "x86_64").unwrap();
        // hello from the first repository, libgreet by the provider whose version fits,
        // sh satisfied by busybox already chosen; dependencies before dependants.
        assert_eq!(names(&u, &r), ["busybox-1.35-1", "filesystem-1-1", "libgreet-ng-3-1", "hello-2.0-1"]);
        assert_eq!(r.explicit.iter().cloned().collect::<Vec<_>>(), ["busybox", "filesystem", "hello"]);
        assert_eq!(r.reasons["libgreet-ng"], "(hello) → hello");
        let r = resolve(&u, &["loop-a".into()], "x86_64").unwrap();
        assert_eq!(r.order.len(), 2);
    }

    #[test]
    fn failures_name_the_chain() {
        let u = universe();
        assert!(resolve(&u, &["nothing".into()], "x86_64").unwrap_err().to_string().contains("target not found: nothing"));
        let err = resolve(&u, &["hello".into(), "hello-git".into()], "x86_64").unwrap_err().to_string();
        assert!(err.contains("conflict"), "{err}");
        let mut u = universe();
        u.add(vec![p("needy", "1-1", "%DEPENDS%\nhello>=10\n")]);
        let err = resolve(&u, &["needy".into()], "x86_64").unwrap_err().to_string();
        assert_eq!(err, "(needy) → needy: no package satisfies the dependency hello>=10");
        assert!(resolve(&u, &["hello".into()], "aarch64").unwrap_err().to_string().contains("is for x86_64"));
    }
}
