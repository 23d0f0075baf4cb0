"""LiveTable.remove_rows: many rows out at once, the rest in order, the cursor kept valid."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tui.widgets.live_table import LiveTable


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LiveTable(id="t", cursor_type="row")


async def test_remove_rows_keeps_the_others_in_order_and_addressable() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(LiveTable)
        table.add_column("n", key="n")
        for i in range(10):
            table.add_row(str(i), key=f"k{i}")
        table.move_cursor(row=9)
        table.remove_rows(["k0", "k3", "k4", "k9", "missing"])
        await pilot.pause()
        assert [str(r.key.value) for r in table.ordered_rows] == [
            "k1",
            "k2",
            "k5",
            "k6",
            "k7",
            "k8",
        ]
        assert table.row_count == 6
        assert table.get_row("k5") == ["5"]
        assert table.get_row_index("k8") == 5
        assert table.cursor_row == 5  # clamped to the last row, not past the end
        table.update_cell("k6", "n", "six")
        assert table.get_cell("k6", "n") == "six"
        table.remove_rows(["k1"])  # one row: the stock path
        table.add_row("10", key="k10")
        assert [str(r.key.value) for r in table.ordered_rows][-1] == "k10"
        assert table.row_count == 6
