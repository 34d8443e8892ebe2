module github.com/tether-mesh/tether/e2e/adsc

go 1.26.8

replace github.com/tether-mesh/tether => ../..
