//! README's library example is the doctest in `src/lib.rs`, line for line
//! (rustdoc's hidden `# ` lines aside), so the example people copy compiles.

/// The first ```rust block after `## The library` in README.md.
fn readme_example() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("## The library")
        .expect("README has `## The library`")..];
    let start = section
        .find("```rust\n")
        .expect("a rust block in `## The library`")
        + 8;
    let block = &section[start..];
    let end = block.find("```\n").expect("the rust block ends");
    block[..end].lines().map(str::to_owned).collect()
}

/// The ```no_run block in the crate documentation, without hidden lines.
fn doctest_example() -> Vec<String> {
    let lib = include_str!("../src/lib.rs");
    let doc: Vec<&str> = lib
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l.strip_prefix("//! ")
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .collect();
    let start = doc
        .iter()
        .position(|l| *l == "```no_run")
        .expect("a no_run example in the crate docs")
        + 1;
    doc[start..]
        .iter()
        .take_while(|l| **l != "```")
        .filter(|l| !l.starts_with("# "))
        .map(|l| (*l).to_owned())
        .collect()
}

#[test]
fn readme_library_example_is_the_compiled_doctest() {
    assert_eq!(readme_example(), doctest_example());
}
