//! The console's charts: SVG drawn on the server with plotters.

use plotters::prelude::*;
use vodo_sandbox::MinuteUsage;

/// Calls (blue) and failures (red) per minute over `series`, as an SVG
/// document of `width` × `height` pixels, or `None` if drawing failed.
pub(crate) fn calls_chart(series: &[MinuteUsage], width: u32, height: u32) -> Option<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let n = i64::try_from(series.len()).ok()?;
        let top = series.iter().map(|m| m.calls).max().unwrap_or(0).max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(-(n - 1)..0i64, 0u64..top + top / 10 + 1)
            .ok()?;
        chart
            .configure_mesh()
            .x_labels(7)
            .y_labels(5)
            .x_desc("minutes ago")
            .x_label_formatter(&|m| format!("{}", -m))
            .light_line_style(RGBColor(0xee, 0xf1, 0xf5))
            .label_style(("sans-serif", 11))
            .draw()
            .ok()?;
        let at = |i: usize| i64::try_from(i).unwrap_or(0) - (n - 1);
        let calls = RGBColor(0x2f, 0x6f, 0xdf);
        let failures = RGBColor(0xc6, 0x28, 0x28);
        chart
            .draw_series(LineSeries::new(
                series.iter().enumerate().map(|(i, m)| (at(i), m.calls)),
                calls.stroke_width(2),
            ))
            .ok()?
            .label("calls")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], calls.stroke_width(2))
            });
        chart
            .draw_series(LineSeries::new(
                series.iter().enumerate().map(|(i, m)| (at(i), m.failures)),
                failures.stroke_width(2),
            ))
            .ok()?
            .label("errors")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], failures.stroke_width(2))
            });
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(RGBColor(0xc5, 0xcc, 0xd6))
            .background_style(WHITE)
            .label_font(("sans-serif", 11))
            .draw()
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_an_svg_with_both_series_and_their_legend() {
        let series: Vec<MinuteUsage> = (0..60)
            .map(|i| MinuteUsage {
                minute: 1_000 + i,
                calls: u64::try_from(i).unwrap_or(0) * 2,
                failures: u64::from(i % 10 == 0),
            })
            .collect();
        let svg = calls_chart(&series, 600, 220).unwrap_or_default();
        assert!(svg.starts_with("<svg"), "{svg:.200}");
        assert!(svg.contains("calls") && svg.contains("errors") && svg.contains("minutes ago"));
        for color in ["#2F6FDF", "#C62828"] {
            let lines = svg
                .lines()
                .filter(|l| l.starts_with("<polyline") && l.contains(color))
                .count();
            assert_eq!(lines, 2, "a line and its legend mark in {color}: {svg}");
        }
        let empty = calls_chart(&[], 600, 220);
        assert!(empty.is_some(), "an empty series still draws its axes");
    }
}
