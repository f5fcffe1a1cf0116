//! Dependency resolution: the closure of the requested packages over `Pre-Depends` and
//! `Depends`, one version per package name, the way apt's default resolver picks:
//! alternatives in the order written (the first satisfiable one wins unless an earlier
//! choice already satisfies the group), real packages before virtual ones, the highest
//! version over all configured suites, and among several providers of a virtual package
//! the most important `Priority`, then the name. `Conflicts` and `Breaks` are checked on
//! the result. Recommends are not followed (like debootstrap and mmdebstrap's minbase).

use std::collections::{BTreeMap, HashMap, VecDeque};

use anyhow::{bail, Result};

use super::index::{MultiArch, Package, Universe};
use super::relation::{ArchQual, Relation};

/// The outcome: selected package indices into the universe, sorted by name, and for each
/// name the chain of packages that asked for it (for messages and the report).
#[derive(Debug)]
pub struct Resolution {
    pub selected: Vec<usize>,
    pub reasons: BTreeMap<String, String>,
}

struct State<'u> {
    u: &'u Universe,
    native: &'u str,
    selected: HashMap<String, usize>,
    parent: HashMap<String, String>,
}

/// Resolves `roots`: each is a relation with the name of what asked for it (`required`,
/// `requested`, …) used at the head of error chains.
pub fn resolve(u: &Universe, native: &str, roots: &[(Relation, String)]) -> Result<Resolution> {
    let mut st = State { u, native, selected: HashMap::new(), parent: HashMap::new() };
    let mut queue = VecDeque::new();
    for (rel, why) in roots {
        if let Some(i) = st.pick(std::slice::from_ref(rel), why)? {
            queue.push_back(i);
        }
    }
    while let Some(i) = queue.pop_front() {
        let pkg = &u.packages[i];
        for group in pkg.pre_depends()?.iter().chain(&pkg.depends()?) {
            if let Some(j) = st.pick(group, &pkg.name)? {
                queue.push_back(j);
            }
        }
    }
    st.check_conflicts()?;
    let mut selected: Vec<usize> = st.selected.values().copied().collect();
    selected.sort_by(|&a, &b| u.packages[a].name.cmp(&u.packages[b].name));
    let reasons = st.selected.keys().map(|n| (n.clone(), st.chain(n))).collect();
    Ok(Resolution { selected, reasons })
}

/// Whether package `p` satisfies `rel`, directly or through `Provides`.
pub fn satisfies(p: &Package, rel: &Relation, native: &str) -> bool {
    let arch_ok = match &rel.arch {
        ArchQual::None => true,
        ArchQual::Any => p.multi_arch == MultiArch::Allowed || p.arch == "all",
        ArchQual::Native => p.arch == native || p.arch == "all",
        ArchQual::Arch(a) => &p.arch == a || p.arch == "all",
    };
    if p.name == rel.name {
        return arch_ok && rel.version.as_ref().is_none_or(|(op, v)| op.holds(&p.version, v));
    }
    p.provides.iter().any(|prov| {
        prov.name == rel.name
            && match (&rel.version, &prov.version) {
                (None, _) => true,
                (Some((op, want)), Some((_, have))) => op.holds(have, want),
                (Some(_), None) => false,
            }
    })
}

impl State<'_> {
    /// Satisfies one group: `None` if something selected already does, else selects the
    /// preferred candidate and returns it for its own dependencies to be followed.
    fn pick(&mut self, group: &[Relation], asker: &str) -> Result<Option<usize>> {
        if group.iter().any(|rel| self.already(rel)) {
            return Ok(None);
        }
        let mut conflicting = Vec::new();
        for rel in group {
            for cand in self.candidates(rel) {
                match self.conflict_with_selected(cand) {
                    Some(other) => conflicting.push(format!("{} conflicts with {other}", self.u.packages[cand].id())),
                    None => {
                        let name = self.u.packages[cand].name.clone();
                        self.selected.insert(name.clone(), cand);
                        self.parent.insert(name, asker.to_string());
                        return Ok(Some(cand));
                    }
                }
            }
        }
        let alts: Vec<String> = group.iter().map(|r| r.to_string()).collect();
        let chain = self.chain(asker);
        if !conflicting.is_empty() {
            bail!("{chain} → {}: every candidate conflicts with the selection ({})", alts.join(" | "), conflicting.join("; "));
        }
        let known: Vec<String> = group.iter().flat_map(|r| self.u.by_name(&r.name).iter().chain(self.u.providers(&r.name))).map(|&i| self.u.packages[i].id()).collect();
        if known.is_empty() {
            bail!("{chain} → {}: no package provides {}", alts.join(" | "), alts.join(" or "));
        }
        bail!("{chain} → {}: no available version satisfies it (available: {})", alts.join(" | "), known.join(", "))
    }

    fn already(&self, rel: &Relation) -> bool {
        let direct = self.selected.get(&rel.name).is_some_and(|&i| satisfies(&self.u.packages[i], rel, self.native));
        direct
            || self.u.providers(&rel.name).iter().any(|&i| {
                let p = &self.u.packages[i];
                self.selected.get(&p.name) == Some(&i) && satisfies(p, rel, self.native)
            })
    }

    /// Candidates for `rel` in order of preference (not yet selected under another version).
    fn candidates(&self, rel: &Relation) -> Vec<usize> {
        let u = self.u;
        let free = |i: usize| !self.selected.contains_key(&u.packages[i].name);
        let mut real: Vec<usize> = u.by_name(&rel.name).iter().copied().filter(|&i| free(i) && satisfies(&u.packages[i], rel, self.native)).collect();
        real.sort_by(|&a, &b| u.packages[b].version.cmp(&u.packages[a].version));
        let mut virt: Vec<usize> = u.providers(&rel.name).iter().copied().filter(|&i| free(i) && u.candidate(&u.packages[i].name) == Some(i) && satisfies(&u.packages[i], rel, self.native)).collect();
        virt.sort_by(|&a, &b| {
            let (pa, pb) = (&u.packages[a], &u.packages[b]);
            pa.priority_rank().cmp(&pb.priority_rank()).then_with(|| pa.name.cmp(&pb.name))
        });
        real.extend(virt);
        real
    }

    fn conflict_with_selected(&self, cand: usize) -> Option<String> {
        let c = &self.u.packages[cand];
        self.selected.values().map(|&s| &self.u.packages[s]).find(|s| conflicts(c, s, self.native) || conflicts(s, c, self.native)).map(|s| s.id())
    }

    fn check_conflicts(&self) -> Result<()> {
        let sel: Vec<&Package> = self.selected.values().map(|&i| &self.u.packages[i]).collect();
        for a in &sel {
            for b in &sel {
                if a.name != b.name && conflicts(a, b, self.native) {
                    bail!("{} ({}) and {} ({}) conflict: remove one of them from the request", a.id(), self.chain(&a.name), b.id(), self.chain(&b.name));
                }
            }
        }
        Ok(())
    }

    /// `root → … → name`, following who asked for each package.
    fn chain(&self, name: &str) -> String {
        let mut parts = vec![name.to_string()];
        let mut cur = name;
        while let Some(p) = self.parent.get(cur) {
            if !self.selected.contains_key(p) || parts.contains(p) || parts.len() > 32 {
                break;
            }
            parts.push(p.clone());
            cur = p;
        }
        parts.reverse();
        parts.join(" → ")
    }
}

/// Whether `a` declares a conflict or break with `b` (one direction; a package never
/// conflicts with itself, even through a virtual name it provides and conflicts with).
fn conflicts(a: &Package, b: &Package, native: &str) -> bool {
    a.name != b.name && a.conflicts_and_breaks().iter().any(|rel| satisfies(b, rel, native))
}

#[cfg(test)]
mod tests;
