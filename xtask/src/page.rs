//! One man page in roff: clap_mangen renders the title, name and options;
//! the synopsis (with value names and `...`), the commands, the sections
//! taken from the after-help text, SEE ALSO and VERSION are assembled here,
//! so every reference names a page that is generated too.

use clap::{Arg, ArgAction, Command};
use roff::{bold, italic, roman, Inline, Roff};

pub struct Page {
    cmd: Command,
    section: &'static str,
    version: String,
    source: Option<String>,
    subcommands_by_page: bool,
    see_also: Vec<(String, &'static str)>,
}

impl Page {
    pub fn new(cmd: Command, section: &'static str, version: &str) -> Page {
        let mut cmd = cmd;
        cmd.build();
        Page {
            cmd,
            section,
            version: version.to_owned(),
            source: None,
            subcommands_by_page: false,
            see_also: Vec::new(),
        }
    }

    /// The footer's source line (default: `<name> <version>`).
    pub fn source(mut self, source: String) -> Page {
        self.source = Some(source);
        self
    }

    /// Subcommands have pages of their own (`vmrm-rm(1)`); otherwise they
    /// are described on this page.
    pub fn subcommands_by_page(mut self) -> Page {
        self.subcommands_by_page = true;
        self
    }

    pub fn see_also(mut self, pages: Vec<(String, &'static str)>) -> Page {
        self.see_also = pages;
        self
    }

    pub fn file_name(&self) -> String {
        format!("{}.{}", self.cmd.get_name(), self.section)
    }

    pub fn render(&self) -> Vec<u8> {
        let name = self.cmd.get_name().to_owned();
        let source = self
            .source
            .clone()
            .unwrap_or_else(|| format!("{name} {}", self.version));
        let man = clap_mangen::Man::new(self.cmd.clone())
            .section(self.section)
            .source(source);
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = man.render_title(&mut out);
        let _ = man.render_name_section(&mut out);

        let mut roff = Roff::new();
        roff.control("SH", ["SYNOPSIS"]);
        roff.text(self.synopsis());
        roff.control("SH", ["DESCRIPTION"]);
        let about = self
            .cmd
            .get_long_about()
            .or(self.cmd.get_about())
            .map(|s| s.to_string())
            .unwrap_or_default();
        roff.text([roman(sentence(&about))]);
        out.extend(roff.render().into_bytes());

        let _ = man.render_options_section(&mut out);

        let mut roff = Roff::new();
        self.commands(&mut roff);
        if let Some(after) = self.cmd.get_after_help() {
            after_help(&mut roff, &after.to_string());
        }
        if !self.see_also.is_empty() {
            roff.control("SH", ["SEE ALSO"]);
            let mut refs = Vec::new();
            for (i, (page, section)) in self.see_also.iter().enumerate() {
                if i > 0 {
                    refs.push(roman(", "));
                }
                refs.push(bold(page.as_str()));
                refs.push(roman(format!("({section})")));
            }
            roff.text(refs);
        }
        roff.control("SH", ["VERSION"]);
        roff.text([roman(self.version.as_str())]);
        out.extend(roff.render().into_bytes());
        out
    }

    fn synopsis(&self) -> Vec<Inline> {
        let bin = self
            .cmd
            .get_bin_name()
            .unwrap_or(self.cmd.get_name())
            .to_owned();
        let mut words = vec![bold(bin)];
        // Options first, then operands, as synopses are written.
        let mut args: Vec<&Arg> = self
            .cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .collect();
        args.sort_by_key(|a| a.is_positional());
        for arg in args {
            words.push(roman(" "));
            words.extend(synopsis_arg(arg));
        }
        if self.cmd.has_subcommands() {
            let required = self.cmd.is_subcommand_required_set();
            words.push(roman(if required { " " } else { " [" }));
            words.push(italic("COMMAND"));
            if !required {
                words.push(roman("]"));
            }
        }
        words
    }

    fn commands(&self, roff: &mut Roff) {
        if !self.cmd.has_subcommands() {
            return;
        }
        roff.control("SH", ["COMMANDS"]);
        for sub in self.cmd.get_subcommands() {
            roff.control("TP", []);
            if self.subcommands_by_page {
                roff.text([
                    bold(format!("{}-{}", self.cmd.get_name(), sub.get_name())),
                    roman(format!("({})", self.section)),
                ]);
            } else {
                roff.text([bold(format!("{} {}", self.cmd.get_name(), sub.get_name()))]);
            }
            let about = sub.get_about().map(|s| s.to_string()).unwrap_or_default();
            roff.text([roman(sentence(&about))]);
        }
    }
}

/// One argument as the synopsis shows it: `[-f|--force]`,
/// `[--socket <PATH>]`, `<PATH>...`.
fn synopsis_arg(arg: &Arg) -> Vec<Inline> {
    let mut words = Vec::new();
    let optional = !arg.is_required_set();
    if optional {
        words.push(roman("["));
    }
    let takes_value = matches!(arg.get_action(), ArgAction::Set | ArgAction::Append);
    let value_name = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| v.to_string())
        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
    let repeated = matches!(arg.get_action(), ArgAction::Append)
        || arg.get_num_args().is_some_and(|n| n.max_values() > 1);
    if arg.is_positional() {
        words.push(italic(format!("<{value_name}>")));
    } else {
        let mut first = true;
        if let Some(short) = arg.get_short() {
            words.push(bold(format!("-{short}")));
            first = false;
        }
        if let Some(long) = arg.get_long() {
            if !first {
                words.push(roman("|"));
            }
            words.push(bold(format!("--{long}")));
        }
        if takes_value {
            words.push(roman(" "));
            words.push(italic(format!("<{value_name}>")));
        }
    }
    if optional {
        words.push(roman("]"));
    }
    if repeated {
        words.push(roman("..."));
    }
    words
}

/// Doc comments drop their final period in clap; pages read as prose.
fn sentence(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() || text.ends_with(['.', '!', '?']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

/// The after-help text as man sections. Its shape, shared by both
/// binaries: `Heading:` lines start a section; a line indented two spaces
/// starts an item, its tag separated from its text by two or more spaces;
/// a deeper indented line continues the item; any other line is a
/// paragraph.
fn after_help(roff: &mut Roff, text: &str) {
    let mut item: Option<(String, String)> = None;
    let flush = |roff: &mut Roff, item: &mut Option<(String, String)>| {
        if let Some((tag, body)) = item.take() {
            roff.control("TP", []);
            roff.text([bold(tag)]);
            roff.text([roman(body)]);
        }
    };
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if indent == 0 && trimmed.ends_with(':') {
            flush(roff, &mut item);
            let heading = trimmed.trim_end_matches(':').to_uppercase();
            roff.control("SH", [heading.as_str()]);
        } else if indent == 2 {
            flush(roff, &mut item);
            let (tag, body) = match trimmed.split_once("  ") {
                Some((tag, body)) => (tag.trim(), body.trim()),
                None => (trimmed, ""),
            };
            item = Some((tag.to_owned(), body.to_owned()));
        } else if indent > 2 {
            match item.as_mut() {
                Some((_, body)) => {
                    if !body.is_empty() {
                        body.push(' ');
                    }
                    body.push_str(trimmed);
                }
                None => {
                    roff.text([roman(trimmed)]);
                }
            }
        } else {
            flush(roff, &mut item);
            roff.control("PP", []);
            roff.text([roman(trimmed)]);
        }
    }
    flush(roff, &mut item);
}
