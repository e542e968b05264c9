//! `simulator loadgen`: maximum-rate load against one URL, reported as oha and wrk do (statuses,
//! errors by kind, latency quantiles), exiting 1 when nothing succeeded.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::fake::loadgen::{self, LoadOptions, TlsTrust};

#[derive(clap::Args, Debug)]
pub struct LoadgenArgs {
    /// http:// or https:// URL to load.
    pub url: String,
    /// Keep-alive connections, one worker each.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// A request header, `Name: value`; repeat for more.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// The request body, read from a file.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// A request (connect included) taking longer counts as a `timeout` error.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub timeout: Duration,
    /// https: trust the CA certificates of this PEM file instead of the platform's roots.
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub ca_file: Option<PathBuf>,
    /// https: accept any certificate (the handshake still happens; nothing is verified).
    #[arg(long)]
    pub insecure: bool,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

impl LoadgenArgs {
    fn options(&self) -> Result<LoadOptions, String> {
        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|_| format!("`{}` is not an HTTP method", self.method))?;
        let mut headers = HeaderMap::new();
        for text in &self.headers {
            let (name, value) = loadgen::parse_header(text)?;
            headers.append(name, value);
        }
        let body = match (&self.body, &self.body_file) {
            (Some(text), _) => Bytes::from(text.clone()),
            (None, Some(path)) => Bytes::from(
                std::fs::read(path)
                    .map_err(|e| format!("cannot read the body file `{}`: {e}", path.display()))?,
            ),
            (None, None) => Bytes::new(),
        };
        let tls = match (&self.ca_file, self.insecure) {
            (Some(path), _) => TlsTrust::CaFile(path.clone()),
            (None, true) => TlsTrust::Insecure,
            (None, false) => TlsTrust::Platform,
        };
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        Ok(LoadOptions {
            url: self.url.clone(),
            connections: self.connections,
            duration: self.duration,
            method,
            headers,
            body,
            timeout: self.timeout,
            tls,
        })
    }
}

/// 0 when some request succeeded (2xx or 3xx), 1 when none did or the options are unusable.
pub async fn run(args: LoadgenArgs) -> ExitCode {
    let options = match args.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("simulator loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    let report = match loadgen::run(&options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("simulator loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    print!("{}", report.render_text());
    if let Some(path) = &args.json {
        if let Err(e) = loadgen::write_json(&report, path) {
            eprintln!("simulator loadgen: {e}");
            return ExitCode::from(3);
        }
    }
    if report.succeeded == 0 {
        eprintln!(
            "simulator loadgen: nothing succeeded: {} requests, none answered 2xx or 3xx",
            report.requests
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
