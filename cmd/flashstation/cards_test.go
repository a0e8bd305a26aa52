package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/colorprofile"

	"github.com/flashstation/flashstation/internal/datadir"
	"github.com/flashstation/flashstation/tui"
)

// cell is one character cell of a terminal screen as tmux holds it.
type cell struct {
	r       rune
	fg, bg  string // "" is the terminal's default, else "r,g,b" or "idx:N"
	reverse bool
}

// paper is what shows behind a cell's text: its background, or in
// inverse video its foreground ("fg" for the default foreground).
func (c cell) paper() string {
	if c.reverse {
		if c.fg == "" {
			return "fg"
		}
		return c.fg
	}
	return c.bg
}

// parseScreen reads `tmux capture-pane -p -e` output into cells: text and
// the SGR attributes that matter here (colours, inverse video).
func parseScreen(out string) [][]cell {
	var screen [][]cell
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var row []cell
		var fg, bg string
		rev := false
		for i := 0; i < len(l); {
			if l[i] == 0x1b && i+1 < len(l) && l[i+1] == '[' {
				j := i + 2
				for j < len(l) && (l[j] < 0x40 || l[j] > 0x7e) {
					j++
				}
				if j < len(l) && l[j] == 'm' {
					ps := strings.Split(l[i+2:j], ";")
					for k := 0; k < len(ps); k++ {
						n, _ := strconv.Atoi(ps[k])
						switch {
						case ps[k] == "" || n == 0:
							fg, bg, rev = "", "", false
						case n == 7:
							rev = true
						case n == 27:
							rev = false
						case n == 39:
							fg = ""
						case n == 49:
							bg = ""
						case (n == 38 || n == 48) && k+1 < len(ps):
							var c string
							if ps[k+1] == "2" && k+4 < len(ps) {
								c = ps[k+2] + "," + ps[k+3] + "," + ps[k+4]
								k += 4
							} else if ps[k+1] == "5" && k+2 < len(ps) {
								c = "idx:" + ps[k+2]
								k += 2
							}
							if n == 38 {
								fg = c
							} else {
								bg = c
							}
						case n >= 30 && n <= 37 || n >= 90 && n <= 97:
							fg = "idx:" + ps[k]
						case n >= 40 && n <= 47 || n >= 100 && n <= 107:
							bg = "idx:" + ps[k]
						}
					}
				}
				i = j + 1
				continue
			}
			r, size := []rune(l[i:])[0], len(string([]rune(l[i:])[0]))
			row = append(row, cell{r: r, fg: fg, bg: bg, reverse: rev})
			i += size
		}
		screen = append(screen, row)
	}
	return screen
}

func text(row []cell) string {
	var b strings.Builder
	for _, c := range row {
		b.WriteRune(c.r)
	}
	return b.String()
}

// tiles finds the verdict tiles on a screen: a FAIL tile's top edge is a
// run of ▚, a PASS tile's a heavy ┏━━┓ whose cells share one paper.
type tile struct{ top, left, bottom, right int }

func findTiles(screen [][]cell, corner, edge, end rune) []tile {
	side := map[rune]rune{'▚': '▌', '┏': '┃'}[corner]
	var out []tile
	for y, row := range screen {
		for x := 0; x < len(row); x++ {
			if row[x].r != corner || (x > 0 && row[x-1].r == edge && corner == edge) {
				continue
			}
			// The top edge: corner, edges, the other corner.
			w := 1
			for x+w < len(row) && row[x+w].r == edge {
				w++
			}
			if x+w >= len(row) || row[x+w].r != end || w < 8 {
				if corner != edge || w < 8 {
					continue
				}
				w-- // a ▚ run: its last cell is the corner
			}
			if y+1 >= len(screen) || x >= len(screen[y+1]) || screen[y+1][x].r != side {
				x += w
				continue // a bottom edge, or no card
			}
			// The bottom edge: the next row at this column that starts one.
			for y2 := y + 2; y2 < len(screen); y2++ {
				if x < len(screen[y2]) && (screen[y2][x].r == corner || corner == '┏' && screen[y2][x].r == '┗') {
					out = append(out, tile{y, x, y2, x + w})
					break
				}
			}
			x += w
		}
	}
	return out
}

// TestBenchCardsOnATerminal runs the demo's bench TUI with the fault mix
// in a real terminal emulator (tmux, on its own socket) at 80x24 with 16
// slots, and checks what an operator sees, from the rendered cells: every
// slot is on screen; a FAIL tile's whole card, frame included, is on the
// FAIL colour (in colour) or in inverse video (NO_COLOR); a PASS tile is
// on its own colour and never in inverse video; PASS tiles say the pass
// tray and no FAIL tile does.
func TestBenchCardsOnATerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux is this test's terminal emulator")
	}
	for _, mono := range []bool{false, true} {
		t.Run(map[bool]string{false: "colour", true: "NO_COLOR"}[mono], func(t *testing.T) {
			dir := t.TempDir()
			sock := filepath.Join(dir, "tmux.sock")
			args := []string{"demo", "--data", filepath.Join(dir, "bench"), "--boards", "16", "--speed", "20", "--fast-keys", "--faults"}
			env := []string{"-e", childEnv + "=" + strings.Join(args, "\x1f"), "-e", "COLORTERM=truecolor"}
			if mono {
				env = append(env, "-e", "NO_COLOR=1")
			}
			cmd := append([]string{"-S", sock, "-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24"}, env...)
			cmd = append(cmd, fmt.Sprintf("%q -test.run=^$; sleep 600", os.Args[0]))
			if out, err := exec.Command(tmux, cmd...).CombinedOutput(); err != nil {
				t.Skipf("tmux: %v %s", err, out)
			}
			defer func() {
				// The hang-up stops the station as SIGTERM does: it ends its
				// units and writes their transcripts, in the test's
				// directory, before it lets go of its data directory.
				exec.Command(tmux, "-S", sock, "kill-server").Run()
				waitReleased(t, filepath.Join(dir, "bench", "data"))
			}()
			capture := func() string {
				out, _ := exec.Command(tmux, "-S", sock, "capture-pane", "-p", "-e", "-t", "0").Output()
				return string(out)
			}
			// The screen that proves it: a PASS and a FAIL tile on it.
			var screen [][]cell
			var fails, passes []tile
			deadline := time.Now().Add(ceiling) // only turns a hang into a failure
			for {
				screen = parseScreen(capture())
				fails = findTiles(screen, '▚', '▚', '▚')
				passes = passes[:0]
				for _, tl := range findTiles(screen, '┏', '━', '┓') {
					// A heavy frame is a PASS tile (the selection has
					// double lines): its verdict line says so.
					if regexp.MustCompile(`✔ (P A S S|PASS) ✔`).MatchString(tileText(screen, tl)) {
						passes = append(passes, tl)
					}
				}
				if len(fails) > 0 && len(passes) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no PASS and FAIL tiles on screen (heavy frames %v, FAIL tiles %v):\n%s", findTiles(screen, '┏', '━', '┓'), fails, plainScreen(screen))
				}
				time.Sleep(100 * time.Millisecond) // polls the screen, the state that proves it
			}
			all := plainScreen(screen)
			for _, line := range []string{"A", "B"} {
				for i := 1; i <= 8; i++ {
					if !regexp.MustCompile(`[ ▶]` + line + strconv.Itoa(i) + ` `).MatchString(all) {
						t.Errorf("slot %s%d is not on the 80x24 screen:\n%s", line, i, all)
					}
				}
			}
			inside := func(tl tile) (cells []cell, txt string) {
				for y := tl.top; y <= tl.bottom; y++ {
					row := screen[y]
					txt += text(row[tl.left:min(tl.right+1, len(row))]) + "\n"
					cells = append(cells, row[tl.left:min(tl.right+1, len(row))]...)
				}
				return cells, txt
			}
			var passPaper string
			for _, tl := range passes {
				cells, txt := inside(tl)
				if !strings.Contains(txt, "→ PASS tray") {
					t.Errorf("a PASS tile does not say the pass tray:\n%s", txt)
				}
				passPaper = cells[0].paper()
				if mono && passPaper != "" {
					t.Errorf("NO_COLOR, yet a PASS tile is on %q", passPaper)
				}
				for _, c := range cells {
					if c.paper() != passPaper || c.reverse {
						t.Errorf("a PASS tile cell %q has paper %q (reverse %v), the tile's is %q:\n%s", c.r, c.paper(), c.reverse, passPaper, txt)
						break
					}
				}
			}
			if !mono && passPaper == "" {
				t.Errorf("a PASS tile on the terminal's own background:\n%s", all)
			}
			for _, tl := range fails {
				cells, txt := inside(tl)
				if strings.Contains(txt, "PASS tray") || !regexp.MustCompile(`→ (REJECT tray|retry|fix:|reinsert board)`).MatchString(txt) {
					t.Errorf("a FAIL tile's instruction:\n%s", txt)
				}
				// The palette's FAIL, as the terminal got it: in true
				// colour, or its nearest of 256 where the program chose those.
				want := map[string]bool{"198,40,40": true, fmt.Sprintf("idx:%d", colorprofile.ANSI256.Convert(tui.DarkPalette.Fail)): true}
				if mono {
					want = map[string]bool{"fg": true}
				}
				for _, c := range cells {
					if !want[c.paper()] || mono && !c.reverse {
						t.Errorf("a FAIL tile cell %q has paper %q (reverse %v), want one of %v over the whole card:\n%s", c.r, c.paper(), c.reverse, want, txt)
						break
					}
				}
				if cells[0].paper() == passPaper {
					t.Errorf("FAIL and PASS tiles are on the same paper %q", passPaper)
				}
			}
			if mono {
				for y, row := range screen {
					for x, c := range row {
						if c.fg != "" || c.bg != "" {
							t.Fatalf("NO_COLOR, yet cell %d,%d %q has colours %q/%q", y, x, c.r, c.fg, c.bg)
						}
					}
				}
			}
			t.Logf("%d FAIL and %d PASS tiles; the screen:\n%s", len(fails), len(passes), all)
		})
	}
}

func tileText(screen [][]cell, tl tile) string {
	var rows []string
	for y := tl.top; y <= tl.bottom; y++ {
		rows = append(rows, text(screen[y][tl.left:min(tl.right+1, len(screen[y]))]))
	}
	return strings.Join(rows, "\n")
}

func plainScreen(screen [][]cell) string {
	var rows []string
	for _, r := range screen {
		rows = append(rows, text(r))
	}
	return strings.Join(rows, "\n")
}

// waitReleased waits until no station holds the data directory dir (a
// blocking lock of its lock file: it is taken when the holder has gone).
func waitReleased(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, datadir.FileName))
	if err != nil {
		return // never taken
	}
	defer f.Close()
	got := make(chan error, 1)
	go func() { got <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case <-got:
	case <-time.After(ceiling): // only turns a hang into a failure
		t.Errorf("the station still holds %s", dir)
	}
}
