export { type Clock, FakeClock, systemClock } from './clock.js';
export { TimingWheel, type WheelOptions, type WheelTimer } from './wheel.js';
