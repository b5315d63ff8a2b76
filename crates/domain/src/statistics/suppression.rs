//! Small-number suppression for published counts, as official statistics do it.
//!
//! A count from 1 to 4 about children in one council's area can identify a child, so it is
//! published as `[c]` (primary suppression). Hiding a cell is not enough when the table also
//! shows totals: a row of `[c] 7 | 10` gives the hidden 3 away by subtraction. So more cells
//! are hidden (secondary suppression) until no hidden cell can be worked out from what is
//! shown.
//!
//! The rule used to decide that is exact, not a rule of thumb. Write the table with its
//! totals as a grid whose last row and column hold the totals; every row and every column
//! is then one equation (its cells add up to its total). Each cell sits in one row and one
//! column, so the hidden cells are the edges of a graph whose nodes are the rows and the
//! columns. A hidden cell can be changed without changing anything shown exactly when it
//! lies on a cycle of that graph (add and subtract the same amount around the cycle: every
//! row and column still adds up). A hidden cell that is a *bridge* is fixed by the shown
//! figures, so another cell next to it is hidden, the smallest non-zero one, and the check
//! runs again. Rows or columns without a published total are no equation: they are joined
//! into one free node, through which any change can flow.
//!
//! Each table is protected on its own; figures published in several tables from the same
//! records (a total repeated elsewhere, say) are the caller's to keep consistent.

use serde::Serialize;

/// Counts from 1 to this are never shown.
pub const SUPPRESS_AT_MOST: u64 = 4;

/// A published figure: a count, or `[c]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    Count(u64),
    Suppressed,
}

impl Figure {
    /// A single count published on its own (no totals to protect it against).
    pub fn of(count: u64) -> Self {
        if (1..=SUPPRESS_AT_MOST).contains(&count) {
            Figure::Suppressed
        } else {
            Figure::Count(count)
        }
    }

    pub fn count(self) -> Option<u64> {
        match self {
            Figure::Count(count) => Some(count),
            Figure::Suppressed => None,
        }
    }
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Figure::Count(count) => write!(f, "{count}"),
            Figure::Suppressed => f.write_str("[c]"),
        }
    }
}

impl Serialize for Figure {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Figure::Count(count) => serializer.serialize_u64(*count),
            Figure::Suppressed => serializer.serialize_str("[c]"),
        }
    }
}

/// A table of counts before suppression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountTable {
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<u64>>,
    /// Publish a total for each row (the counts of a row add up: each record is in one column).
    pub row_totals: bool,
    /// Publish a total for each column, and the grand total when both are published.
    pub column_totals: bool,
}

/// A table as published: its figures, with totals as the last column and row when published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedTable {
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// `figures[row][column]`, including the total row and column when published.
    pub figures: Vec<Vec<Figure>>,
}

/// The grid with totals: interior cells, then a total column and a total row if published.
struct Grid {
    values: Vec<Vec<u64>>,
    /// Each row index is an equation (its total is published).
    row_equations: bool,
    column_equations: bool,
}

impl Grid {
    fn of(table: &CountTable) -> Self {
        let mut values: Vec<Vec<u64>> = table
            .cells
            .iter()
            .map(|row| {
                let mut row = row.clone();
                row.resize(table.columns.len(), 0);
                if table.row_totals {
                    row.push(row.iter().sum());
                }
                row
            })
            .collect();
        values.resize(table.rows.len(), vec![0; table.columns.len()]);
        if table.column_totals {
            let width = values.first().map_or(table.columns.len(), Vec::len);
            let totals = (0..width)
                .map(|c| values.iter().map(|row| row[c]).sum())
                .collect();
            values.push(totals);
        }
        Self {
            values,
            row_equations: table.row_totals,
            column_equations: table.column_totals,
        }
    }

    fn height(&self) -> usize {
        self.values.len()
    }

    fn width(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }

    /// Graph node of row `r` and column `c`: node 0 is the free node (no equation).
    fn row_node(&self, r: usize) -> usize {
        if self.row_equations { 1 + r } else { 0 }
    }

    fn column_node(&self, c: usize) -> usize {
        if self.column_equations {
            1 + self.height() + c
        } else {
            0
        }
    }

    fn nodes(&self) -> usize {
        1 + self.height() + self.width()
    }

    /// The nodes reachable from `start` through hidden cells other than `skip`.
    fn reachable(&self, hidden: &[Vec<bool>], start: usize, skip: (usize, usize)) -> Vec<bool> {
        let mut adjacent = vec![vec![]; self.nodes()];
        for (r, row) in hidden.iter().enumerate() {
            for (c, &is_hidden) in row.iter().enumerate() {
                if is_hidden && (r, c) != skip {
                    let (a, b) = (self.row_node(r), self.column_node(c));
                    adjacent[a].push(b);
                    adjacent[b].push(a);
                }
            }
        }
        let mut seen = vec![false; self.nodes()];
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(node) = stack.pop() {
            for &next in &adjacent[node] {
                if !seen[next] {
                    seen[next] = true;
                    stack.push(next);
                }
            }
        }
        seen
    }

    /// Whether hidden cell `(r, c)` is a bridge of the hidden cells' graph: the shown
    /// figures then fix its value.
    fn is_bridge(&self, hidden: &[Vec<bool>], r: usize, c: usize) -> bool {
        let (from, to) = (self.row_node(r), self.column_node(c));
        // A cell in no equation at all (a loop on the free node): nothing constrains it.
        from != to && !self.reachable(hidden, from, (r, c))[to]
    }

    /// The cell to hide so that bridge `(r, c)` is a bridge no more: preferably one joining
    /// the two sides the bridge separates (then it lies on a cycle at once), the smallest
    /// non-zero such cell; failing that, the smallest non-zero shown cell in its row or
    /// column, which grows a side for the next pass; failing that, any shown cell.
    fn partner(&self, hidden: &[Vec<bool>], r: usize, c: usize) -> Option<(usize, usize)> {
        let side_a = self.reachable(hidden, self.row_node(r), (r, c));
        let side_b = self.reachable(hidden, self.column_node(c), (r, c));
        let cost = |&(rr, cc): &(usize, usize)| {
            let value = self.values[rr][cc];
            (value == 0, value, rr, cc)
        };
        let shown = (0..self.height())
            .flat_map(|rr| (0..self.width()).map(move |cc| (rr, cc)))
            .filter(|&(rr, cc)| !hidden[rr][cc]);
        let joining = shown
            .clone()
            .filter(|&(rr, cc)| {
                let (a, b) = (self.row_node(rr), self.column_node(cc));
                (side_a[a] && side_b[b]) || (side_b[a] && side_a[b])
            })
            .min_by_key(cost);
        joining
            .or_else(|| {
                shown
                    .clone()
                    .filter(|&(rr, cc)| rr == r || cc == c)
                    .min_by_key(cost)
            })
            .or_else(|| shown.min_by_key(cost))
    }
}

/// Suppresses `table`: counts from 1 to 4 hidden, then as many more as it takes for no
/// hidden count to follow from the published ones.
pub fn suppress(table: &CountTable) -> PublishedTable {
    let grid = Grid::of(table);
    let mut hidden: Vec<Vec<bool>> = grid
        .values
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| (1..=SUPPRESS_AT_MOST).contains(v))
                .collect()
        })
        .collect();
    // Each pass hides one more cell or ends, so this ends within height × width passes.
    loop {
        let bridge = (0..grid.height())
            .flat_map(|r| (0..grid.width()).map(move |c| (r, c)))
            .find(|&(r, c)| hidden[r][c] && grid.is_bridge(&hidden, r, c));
        let Some((r, c)) = bridge else { break };
        match grid.partner(&hidden, r, c) {
            Some((pr, pc)) => hidden[pr][pc] = true,
            None => break,
        }
    }
    let mut rows = table.rows.clone();
    let mut columns = table.columns.clone();
    if table.row_totals {
        columns.push("Total".to_owned());
    }
    if table.column_totals {
        rows.push("Total".to_owned());
    }
    let figures = grid
        .values
        .iter()
        .zip(&hidden)
        .map(|(values, hidden)| {
            values
                .iter()
                .zip(hidden)
                .map(|(&value, &hidden)| {
                    if hidden {
                        Figure::Suppressed
                    } else {
                        Figure::Count(value)
                    }
                })
                .collect()
        })
        .collect();
    PublishedTable {
        rows,
        columns,
        figures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(cells: Vec<Vec<u64>>, row_totals: bool, column_totals: bool) -> CountTable {
        CountTable {
            rows: (0..cells.len()).map(|r| format!("r{r}")).collect(),
            columns: (0..cells.first().map_or(0, Vec::len))
                .map(|c| format!("c{c}"))
                .collect(),
            cells,
            row_totals,
            column_totals,
        }
    }

    /// Independent of the graph rule above: linear algebra. The published figures give one
    /// equation per row and column with a total; a hidden cell is revealed exactly when its
    /// unit vector lies in the row space of those equations restricted to the hidden cells
    /// (rank does not grow when it is added).
    fn revealed(table: &CountTable, published: &PublishedTable) -> Vec<(usize, usize)> {
        let height = published.figures.len();
        let width = published.figures.first().map_or(0, Vec::len);
        let unknowns: Vec<(usize, usize)> = (0..height)
            .flat_map(|r| (0..width).map(move |c| (r, c)))
            .filter(|&(r, c)| published.figures[r][c] == Figure::Suppressed)
            .collect();
        let index = |r: usize, c: usize| unknowns.iter().position(|&u| u == (r, c));
        let mut equations: Vec<Vec<f64>> = vec![];
        let interior_width = table.columns.len();
        let interior_height = table.rows.len();
        if table.row_totals {
            for r in 0..height {
                let mut eq = vec![0.0; unknowns.len()];
                for c in 0..width {
                    if let Some(i) = index(r, c) {
                        eq[i] = if c < interior_width { 1.0 } else { -1.0 };
                    }
                }
                equations.push(eq);
            }
        }
        if table.column_totals {
            for c in 0..width {
                let mut eq = vec![0.0; unknowns.len()];
                for r in 0..height {
                    if let Some(i) = index(r, c) {
                        eq[i] = if r < interior_height { 1.0 } else { -1.0 };
                    }
                }
                equations.push(eq);
            }
        }
        let base = rank(equations.clone());
        unknowns
            .iter()
            .enumerate()
            .filter(|&(i, _)| {
                let mut with = equations.clone();
                let mut unit = vec![0.0; unknowns.len()];
                unit[i] = 1.0;
                with.push(unit);
                rank(with) == base
            })
            .map(|(_, &cell)| cell)
            .collect()
    }

    fn rank(mut m: Vec<Vec<f64>>) -> usize {
        let cols = m.first().map_or(0, Vec::len);
        let mut rank = 0;
        for col in 0..cols {
            let Some(pivot) = (rank..m.len()).find(|&r| m[r][col].abs() > 1e-9) else {
                continue;
            };
            m.swap(rank, pivot);
            for r in 0..m.len() {
                if r != rank && m[r][col].abs() > 1e-9 {
                    let factor = m[r][col] / m[rank][col];
                    let pivot_row = m[rank].clone();
                    for (value, pivot) in m[r].iter_mut().zip(&pivot_row) {
                        *value -= factor * pivot;
                    }
                }
            }
            rank += 1;
        }
        rank
    }

    #[test]
    fn a_lone_small_count_beside_its_total_takes_another_cell_with_it() {
        let published = suppress(&table(vec![vec![3, 7, 12]], true, false));
        // 3 is hidden; 7 (the smallest other) goes too, so 12 - 7 does not give 3 away.
        assert_eq!(
            published.figures[0],
            vec![
                Figure::Suppressed,
                Figure::Suppressed,
                Figure::Count(12),
                Figure::Count(22)
            ]
        );
    }

    #[test]
    fn zero_and_five_are_shown_and_no_small_count_means_nothing_hidden() {
        let published = suppress(&table(vec![vec![0, 5], vec![9, 6]], true, true));
        assert!(
            published
                .figures
                .iter()
                .flatten()
                .all(|f| f.count().is_some())
        );
    }

    #[test]
    fn a_total_from_one_to_four_is_hidden_too() {
        let published = suppress(&table(vec![vec![2], vec![1]], false, true));
        assert_eq!(published.figures[2][0], Figure::Suppressed);
        assert!(revealed(&table(vec![vec![2], vec![1]], false, true), &published).is_empty());
    }

    #[test]
    fn without_totals_only_small_counts_are_hidden() {
        let published = suppress(&table(vec![vec![3], vec![40], vec![9]], false, false));
        assert_eq!(
            published.figures,
            vec![
                vec![Figure::Suppressed],
                vec![Figure::Count(40)],
                vec![Figure::Count(9)]
            ]
        );
    }

    #[test]
    fn single_figures_follow_the_same_threshold() {
        assert_eq!(Figure::of(0), Figure::Count(0));
        assert_eq!(Figure::of(4), Figure::Suppressed);
        assert_eq!(Figure::of(5), Figure::Count(5));
        assert_eq!(
            serde_json::to_string(&[Figure::of(2), Figure::of(12)]).ok(),
            Some(r#"["[c]",12]"#.to_owned())
        );
    }

    fn small_biased_count() -> impl Strategy<Value = u64> {
        prop_oneof![3 => 0u64..=6, 2 => 0u64..=40]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Whatever the table: no count from 1 to 4 is shown, shown figures are the true
        /// ones, and no hidden count can be worked out from the published row and column
        /// totals.
        #[test]
        fn no_small_count_is_shown_or_can_be_worked_out(
            height in 1usize..=5,
            width in 1usize..=5,
            values in prop::collection::vec(small_biased_count(), 25),
            row_totals in any::<bool>(),
            column_totals in any::<bool>(),
        ) {
            let cells: Vec<Vec<u64>> = (0..height)
                .map(|r| (0..width).map(|c| values[r * 5 + c]).collect())
                .collect();
            let table = table(cells, row_totals, column_totals);
            let published = suppress(&table);
            let grid = Grid::of(&table);
            for (r, row) in published.figures.iter().enumerate() {
                for (c, figure) in row.iter().enumerate() {
                    if let Figure::Count(count) = figure {
                        prop_assert!(!(1..=SUPPRESS_AT_MOST).contains(count));
                        prop_assert_eq!(*count, grid.values[r][c]);
                    }
                }
            }
            prop_assert_eq!(revealed(&table, &published), Vec::<(usize, usize)>::new());
        }
    }
}
