package console_test

import (
	"bytes"
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flashstation/flashstation/console"
)

// TestWatchTimeouts drives Watch with real timers in a synctest bubble:
// the boot hangs during seeding and fails exactly when the seeding timeout
// ends, twenty fake minutes later.
func TestWatchTimeouts(t *testing.T) {
	data := composite(t)
	hang := data[:bytes.Index(data, []byte("Mount snap"))]
	synctest.Test(t, func(t *testing.T) {
		chunks := make(chan console.Chunk)
		start := time.Now()
		var failedAt time.Duration
		done := make(chan console.Verdict)
		go func() {
			done <- console.Watch(context.Background(), console.NewMachine(profile(t, "uc20"), start), chunks, func(e console.Event) {
				if e.Kind == console.EventFail {
					failedAt = time.Since(start)
				}
			})
		}()
		chunks <- console.Chunk{At: time.Now(), Data: hang}
		synctest.Wait()
		time.Sleep(19 * time.Minute)
		synctest.Wait()
		select {
		case v := <-done:
			t.Fatalf("failed during silent seeding: %+v", v)
		default:
		}
		v := <-done
		if v.Reason != console.ReasonStageTimeout || failedAt != 20*time.Minute {
			t.Errorf("verdict %s after %v, want stage-timeout after 20m", v.Reason, failedAt)
		}
	})
}

func TestWatchNoOutputAndUnplug(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		chunks := make(chan console.Chunk)
		start := time.Now()
		v := console.Watch(context.Background(), console.NewMachine(profile(t, "uc20"), start), chunks, nil)
		if v.Reason != console.ReasonNoOutput || time.Since(start) != 30*time.Second {
			t.Errorf("%s after %v", v.Reason, time.Since(start))
		}
	})
	synctest.Test(t, func(t *testing.T) {
		chunks := make(chan console.Chunk, 1)
		chunks <- console.Chunk{At: time.Now(), Data: []byte("U-Boot 2020.10\r\n")}
		close(chunks) // the capture gave up: the adapter never came back
		v := console.Watch(context.Background(), console.NewMachine(profile(t, "uc20"), time.Now()), chunks, nil)
		if v.Reason != console.ReasonUnplugged {
			t.Errorf("%+v", v)
		}
	})
}
