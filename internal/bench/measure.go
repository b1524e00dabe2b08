package bench

import (
	"bytes"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cpuTime is the user plus system CPU time of this process so far
// (getrusage RUSAGE_SELF): every goroutine, the embedded NATS server's
// included, and the simulator's too when it runs in process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// maxRSS is the process's peak resident set size so far, in bytes.
func maxRSS() uint64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return uint64(ru.Maxrss) * 1024
}

var heapSamples = []metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
}

var heapMu sync.Mutex

// heapInUse is runtime.MemStats.HeapInuse (bytes in in-use heap spans:
// live and not yet swept objects plus the spans' free slots), read through
// runtime/metrics, which does not stop the world.
func heapInUse() uint64 {
	heapMu.Lock()
	defer heapMu.Unlock()
	metrics.Read(heapSamples)
	var n uint64
	for _, s := range heapSamples {
		if s.Value.Kind() == metrics.KindUint64 {
			n += s.Value.Uint64()
		}
	}
	return n
}

// settledHeap collects garbage until the heap in use stops shrinking and
// returns it: the memory actually held.
func settledHeap() uint64 {
	runtime.GC()
	h := heapInUse()
	for range 3 {
		runtime.GC()
		n := heapInUse()
		if n >= h {
			return n
		}
		h = n
	}
	return h
}

// sample is one measured piece of work.
type sample struct {
	wall time.Duration
	cpu  time.Duration
	// peak is the highest heap in use seen while the work ran (sampled
	// every 5 ms) minus the settled heap before it started. Garbage counts:
	// it measures how far the heap grows under the collector's pacing
	// (GOGC), which over a large live heap says more about the pacing than
	// about the work.
	peak uint64
	// live is the highest live heap the collector found while the work ran
	// (at each collection: /gc/heap/live) minus the live heap before it:
	// what the work held at once.
	live uint64
	// peakAbs and liveAbs are the same highs, whole: everything the
	// process held, what it held before the work included.
	peakAbs, liveAbs uint64
	// server is the NATS server's CPU time during the work when it runs
	// in a child process (natsEnv.serverCPU); 0 otherwise.
	server time.Duration
}

var liveSample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}

// liveHeap is the heap the last collection marked live.
func liveHeap() uint64 {
	heapMu.Lock()
	defer heapMu.Unlock()
	metrics.Read(liveSample)
	if liveSample[0].Value.Kind() == metrics.KindUint64 {
		return liveSample[0].Value.Uint64()
	}
	return 0
}

// measure runs f after a full collection and reports its wall time, CPU
// time and peak heap.
func measure(f func() error) (sample, error) {
	base := settledHeap()
	baseLive := liveHeap()
	stop := make(chan struct{})
	peakc := make(chan [2]uint64, 1)
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var peak, live uint64
		for {
			peak = max(peak, heapInUse())
			if l := liveHeap(); l > live {
				live = l
				keepLiveProfile()
			}
			select {
			case <-stop:
				peakc <- [2]uint64{max(peak, heapInUse()), max(live, liveHeap())}
				return
			case <-t.C:
			}
		}
	}()
	c0, t0 := cpuTime(), time.Now()
	err := f()
	s := sample{wall: time.Since(t0), cpu: cpuTime() - c0}
	close(stop)
	p := <-peakc
	s.peakAbs, s.liveAbs = p[0], p[1]
	if p[0] > base {
		s.peak = p[0] - base
	}
	if p[1] > baseLive {
		s.live = p[1] - baseLive
	}
	return s, err
}

// median of the samples, field by field.
// then is s followed by t: their times add up, their heap highs are the
// higher of the two (the work of one is over when the other starts).
func (s sample) then(t sample) sample {
	s.wall += t.wall
	s.cpu += t.cpu
	s.server += t.server
	s.peak, s.live = max(s.peak, t.peak), max(s.live, t.live)
	s.peakAbs, s.liveAbs = max(s.peakAbs, t.peakAbs), max(s.liveAbs, t.liveAbs)
	return s
}

func median(ss []sample) sample {
	if len(ss) == 0 {
		return sample{}
	}
	pick := func(get func(sample) float64) []float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = get(s)
		}
		slices.Sort(v)
		return v
	}
	mid := len(ss) / 2
	return sample{
		wall:    time.Duration(pick(func(s sample) float64 { return float64(s.wall) })[mid]),
		cpu:     time.Duration(pick(func(s sample) float64 { return float64(s.cpu) })[mid]),
		peak:    uint64(pick(func(s sample) float64 { return float64(s.peak) })[mid]),
		live:    uint64(pick(func(s sample) float64 { return float64(s.live) })[mid]),
		peakAbs: uint64(pick(func(s sample) float64 { return float64(s.peakAbs) })[mid]),
		liveAbs: uint64(pick(func(s sample) float64 { return float64(s.liveAbs) })[mid]),
		server:  time.Duration(pick(func(s sample) float64 { return float64(s.server) })[mid]),
	}
}

// spread lists the ratio of each repetition's figure to the floor measured
// just before it, so that a reader sees how much the machine moved them:
// the table's ratio is of the medians. of picks the quantity; for rates
// (events per second over the same count) the ratio is floor time over
// figure time.
func spread(floors, figs []sample, of func(sample) time.Duration, rate bool) string {
	if len(floors) < 2 || len(floors) != len(figs) {
		return ""
	}
	parts := make([]string, len(figs))
	for i := range figs {
		f, m := of(floors[i]).Seconds(), of(figs[i]).Seconds()
		if rate {
			f, m = m, f
		}
		_, parts[i] = ratio(m, f)
	}
	return "per repetition " + strings.Join(parts, ", ")
}

// andSpread is "; " and the spread of wall times, or "" for one repetition.
func andSpread(floors, figs []sample, rate bool) string {
	if sp := spread(floors, figs, wallOf, rate); sp != "" {
		return "; " + sp
	}
	return ""
}

func wallOf(s sample) time.Duration { return s.wall }
func cpuOf(s sample) time.Duration  { return s.cpu }

// liveProfiles, when on (Config.MemProfile), keeps the heap profile taken
// at the highest live heap of the latest measured work: a heap profile's
// in-use figures are those of the last collection, the one that found that
// live heap, so it shows what the work held at its peak.
var liveProfiles struct {
	sync.Mutex
	on   bool
	last bytes.Buffer
}

func keepLiveProfile() {
	liveProfiles.Lock()
	defer liveProfiles.Unlock()
	if !liveProfiles.on {
		return
	}
	liveProfiles.last.Reset()
	_ = pprof.Lookup("heap").WriteTo(&liveProfiles.last, 0)
}
