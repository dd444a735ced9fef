package testenv

import (
	"net"
	"sync"
	"testing"
)

// Serve accepts connections on l until the test ends, each served by serve on its own
// goroutine with its number (from 1); at cleanup it closes l and every connection still
// open and waits for serve to return. It returns how many it has accepted so far.
func Serve(tb testing.TB, l net.Listener, serve func(n int, c net.Conn)) (accepted func() int) {
	var mu sync.Mutex
	var open []net.Conn
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			n := len(open)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(n, c)
			}()
		}
	}()
	return func() int { mu.Lock(); defer mu.Unlock(); return len(open) }
}
