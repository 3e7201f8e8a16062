//! The console's files, compiled into the binary from `assets/console/`
//! (hand-written HTML, CSS and JavaScript: nothing is fetched at run time).

/// One file of the console.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

pub const PAGE: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../../assets/console/index.html"),
};

pub const SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("../../../assets/console/console.js"),
};

pub const CHART: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("../../../assets/console/chart.js"),
};

pub const STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_str!("../../../assets/console/console.css"),
};
